#include "cmd/cmd.h"
int cmd_init(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int cmd_serve(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int cmd_operator(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int cmd_audit(int argc, char **argv) { (void)argc; (void)argv; return 1; }
