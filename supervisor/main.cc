#include "cli.h"

int main(int argc, char** argv) { return deployctl::run_cli(argc, argv); }
