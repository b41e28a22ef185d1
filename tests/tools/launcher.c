/* An ELF executable named ModuleBasic.out that runs the Python stand-in (see
 * modulebasic_standin.py): dhm reads the binary's ELF header to check its ABI, so the
 * stand-in must be a real executable for this machine. PYTHON and SCRIPT are set with -D. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char *args[argc + 2];
    args[0] = PYTHON;
    args[1] = SCRIPT;
    for (int i = 1; i < argc; ++i) args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    execv(PYTHON, args);
    perror("execv");
    return 127;
}
