/* direct_launch: the floor of the peer benchmark's startup scenario, not a supervisor.
 *
 *   direct_launch N WORKER --port BASE
 *
 * fork+execs N copies of WORKER, copy i with the arguments `--port BASE --offset i` (the same
 * argv as every supervisor gives the tiny worker), then waits for them and exits when none is
 * left. No restart, no config, no sockets of its own: whatever a supervisor adds to startup on
 * top of this is its overhead. The bench stops it by killing its process tree by pid.
 * Build: cc -O2 -o direct_launch direct_launch.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: direct_launch N WORKER --port BASE\n");
        return 2;
    }
    int count = atoi(argv[1]);
    for (int i = 0; i < count; ++i) {
        char offset[16];
        snprintf(offset, sizeof offset, "%d", i);
        pid_t pid = fork();
        if (pid < 0) {
            perror("direct_launch: fork");
            return 1;
        }
        if (pid == 0) {
            char *args[] = {argv[2], argv[3], argv[4], "--offset", offset, NULL};
            execv(argv[2], args);
            perror("direct_launch: exec");
            _exit(127);
        }
    }
    while (wait(NULL) > 0) {
    }
    return 0;
}
