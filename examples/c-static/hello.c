/* A static hello: no libc or loader needed at run time, so it runs on an empty (scratch) image.
 * `hello --check` prints "ok" (the build proves the binary runs); otherwise it greets the name
 * given as the first argument, or the world. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--check") == 0) {
        puts("ok");
        return 0;
    }
    printf("hello, %s, from a static C binary built by forklift\n", argc > 1 ? argv[1] : "world");
    return 0;
}
