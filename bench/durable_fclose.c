/* LD_PRELOAD shim for bench/store_bench.py's "dcmtk-durable" server: DCMTK's storescp made
 * durable the way pacsref's default store is, so that the cost of the two syncs can be told
 * apart from the cost of the server. storescp writes each object with fopen/fwrite/fclose
 * (libofstd's OFFile) and sends the C-STORE-RSP after the fclose; here every file opened for
 * writing is, at its fclose, flushed, fdatasync'ed, and the directory holding its name fsync'ed:
 * the same two device flushes per object as pacsref's fdatasync, rename, fsync(directory).
 * A failed sync is reported on stderr and makes fclose fail, as it would fail the store.
 * Built by store_bench.py with `cc -O2 -shared -fPIC`; nothing else uses it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 64
static struct { FILE *file; char *dir; } written[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void remember(FILE *file, const char *path, const char *mode) {
    if (!file || !strpbrk(mode, "wa+")) return;
    char *copy = strdup(path);
    if (!copy) return;
    char *dir = strdup(dirname(copy));
    free(copy);
    if (!dir) return;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++)
        if (!written[i].file) { written[i].file = file; written[i].dir = dir; dir = NULL; break; }
    pthread_mutex_unlock(&lock);
    if (dir) fprintf(stderr, "durable_fclose: more than %d files open for writing\n", SLOTS);
    free(dir);
}

static FILE *opened(const char *name, FILE *(**real)(const char *, const char *),
                    const char *path, const char *mode) {
    if (!*real) *real = dlsym(RTLD_NEXT, name);
    FILE *file = (*real)(path, mode);
    remember(file, path, mode);
    return file;
}

FILE *fopen(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    return opened("fopen", &real, path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    return opened("fopen64", &real, path, mode);
}

int fclose(FILE *file) {
    static int (*real)(FILE *);
    if (!real) real = dlsym(RTLD_NEXT, "fclose");
    char *dir = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++)
        if (written[i].file == file) { dir = written[i].dir; written[i].file = NULL; written[i].dir = NULL; break; }
    pthread_mutex_unlock(&lock);
    int failed = 0;
    if (dir) {
        failed |= fflush(file) != 0 || fdatasync(fileno(file)) != 0;
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        failed |= fd < 0 || fsync(fd) != 0;
        if (fd >= 0) close(fd);
        if (failed) fprintf(stderr, "durable_fclose: syncing a file in %s failed\n", dir);
        free(dir);
    }
    int closed = real(file);
    return failed ? EOF : closed;
}
