/* The program tests/arch/install_check.sh builds against an installed weft,
 * dynamically and statically, exactly as README's install section says. */
#include <stdio.h>
#include <string.h>
#include <weft.h>

static void *child(void *arg)
{
    weft_sleep_ms(1);
    return (void *)((long)arg * 2);
}

static void *root(void *arg)
{
    (void)arg;
    weft_task *t[50];
    for (long i = 0; i < 50; i++)
        if (weft_task_spawn(NULL, child, (void *)i, NULL, &t[i]) != 0)
            return (void *)-1L;
    long sum = 0;
    for (int i = 0; i < 50; i++) {
        void *r;
        if (weft_join(t[i], &r) != 0)
            return (void *)-1L;
        sum += (long)r;
    }
    return (void *)sum;
}

int main(void)
{
    void *r = NULL;
    int rc = weft_main(root, NULL, &r);
    if (rc != 0 || (long)r != 2450) {
        fprintf(stderr, "install_app: weft_main %d, sum %ld\n", rc, (long)r);
        return 1;
    }
    if (strcmp(weft_version(), WEFT_VERSION_STRING) != 0 || weft_version_number() != WEFT_VERSION_NUMBER) {
        fprintf(stderr, "install_app: runs with weft %s, built with %s\n", weft_version(), WEFT_VERSION_STRING);
        return 1;
    }
    printf("install_app: weft %s, sum %ld\n", weft_version(), (long)r);
    return 0;
}
