/* tiny_worker: the same minimal HTTP server under every supervisor the peer benchmark runs.
 *
 *   tiny_worker [--port N [--offset K]] [--crash-if FILE]
 *
 * With --crash-if, if FILE exists it appends its pid to FILE and exits 1 at once (the crash-loop
 * scenario: the file both arms the crash and counts the starts).
 * Listens on the inherited fd 3 when LISTEN_FDS=1 (systemd convention, as deployctl passes its
 * `listen` sockets), else on 127.0.0.1:N+K with SO_REUSEPORT so that several copies can share
 * one port. Answers every request (GET, no body) with 200 "ok\n" and an X-Pid header naming
 * the process that answered; keeps connections alive. One process, one thread, epoll.
 * Build: cc -O2 -o tiny_worker tiny_worker.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_EVENTS = 64, READ_SIZE = 4096 };

static int inherited_listener(void) {
    const char *fds = getenv("LISTEN_FDS");
    if (fds == NULL || strcmp(fds, "1") != 0) return -1;
    const char *pid = getenv("LISTEN_PID");
    if (pid != NULL && atoi(pid) != getpid()) return -1;
    return 3;
}

static int bound_listener(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "tiny_worker: cannot listen on 127.0.0.1:%d: %s\n", port,
                strerror(errno));
        exit(1);
    }
    return fd;
}

/* If path exists: appends "PID\n" to it and exits 1, a worker that crashes as it starts. */
static void crash_if(const char *path) {
    FILE *log = fopen(path, "r+");
    if (log == NULL) return;
    fseek(log, 0, SEEK_END);
    fprintf(log, "%d\n", (int)getpid());
    fclose(log);
    fprintf(stderr, "tiny_worker: %s exists: exiting 1 at once\n", path);
    exit(1);
}

/* The listener from the command line or the environment; exits with a message if neither. */
static int open_listener(int argc, char **argv) {
    int port = 0, offset = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--offset") == 0) offset = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--crash-if") == 0) crash_if(argv[i + 1]);
    }
    int inherited = inherited_listener();
    if (inherited >= 0) return inherited;
    if (port <= 0) {
        fprintf(stderr, "tiny_worker: give --port N (1..65535) or LISTEN_FDS=1 with fd 3\n");
        exit(2);
    }
    return bound_listener(port + offset);
}

/* Counts complete requests ("\r\n\r\n") in data; `tail` carries the last 3 bytes between
 * reads of one connection (kept in the epoll data next to the fd). */
static int count_requests(const char *data, ssize_t size, unsigned *tail) {
    int requests = 0;
    unsigned window = *tail;
    for (ssize_t i = 0; i < size; i++) {
        window = (window << 8) | (unsigned char)data[i];
        if (window == 0x0d0a0d0a) requests++;
    }
    *tail = window;
    return requests;
}

/* Answers every complete request readable on fd; returns 0 once fd is closed (peer gone, error,
 * or a response that did not fit the socket buffer at once), 1 while it stays open. */
static int serve(int fd, unsigned *tail, const char *response, size_t length) {
    char buffer[READ_SIZE];
    for (;;) {
        ssize_t got = read(fd, buffer, sizeof buffer);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (got <= 0) break;
        for (int n = count_requests(buffer, got, tail); n > 0; n--)
            if (write(fd, response, length) != (ssize_t)length) goto close_it;
    }
close_it:
    close(fd); /* also removes it from the epoll set */
    return 0;
}

static void accept_all(int listener, int epoll) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = (unsigned)fd};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) close(fd);
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int listener = open_listener(argc, argv);
    fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK);
    char response[128];
    int length = snprintf(response, sizeof response,
                          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pid: %d\r\n\r\nok\n",
                          (int)getpid());
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = (unsigned)listener};
    if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event) != 0) {
        fprintf(stderr, "tiny_worker: epoll: %s\n", strerror(errno));
        return 1;
    }
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(epoll, events, MAX_EVENTS, -1);
        for (int i = 0; i < ready; i++) {
            if (events[i].data.u64 == (unsigned)listener) {
                accept_all(listener, epoll);
                continue;
            }
            /* The connection's fd is the low 32 bits; its carried tail the high 32. */
            int fd = (int)(events[i].data.u64 & 0xffffffffu);
            unsigned tail = (unsigned)(events[i].data.u64 >> 32);
            if (!serve(fd, &tail, response, (size_t)length)) continue;
            unsigned long long packed = ((unsigned long long)tail << 32) | (unsigned)fd;
            struct epoll_event update = {.events = EPOLLIN, .data.u64 = packed};
            epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &update);
        }
    }
}
