/* mshelper: the guest side of memscan's ground-truth harness (runs as a static binary inside a
 * QEMU guest, never on the host). Every result is one line on stdout:
 *   MSREC {"type":...,...}
 * which the host runner parses from the serial console.
 *
 *   mshelper read TAG PATH        read PATH once in a child; time the read() on CLOCK_MONOTONIC;
 *                                 report the value, errno and the child's exit signal (a read
 *                                 that hits a kernel BUG or oops kills the reader)
 *   mshelper write TAG PATH TEXT  the same for one write() (echo offline > memoryN/state)
 *   mshelper attempt TAG PATH PFN NPFN OUTDIR [memmap]
 *                                 the same read, with this block's /proc/kpageflags and
 *                                 /proc/kpagecount (and raw struct pages from /proc/kcore)
 *                                 copied to OUTDIR right before it: the reader is forked and
 *                                 has opened PATH and touched its buffers first, so nothing
 *                                 but the copy runs between the copy and the read
 *   mshelper kcore VADDR LEN OUT  copy LEN bytes of kernel virtual memory at VADDR out of
 *                                 /proc/kcore (ELF core: found through its PT_LOAD headers)
 *   mshelper hog anon|mlock MB    allocate and touch MB MiB (mlock'ed for "mlock"), then sleep
 *
 * Written for memscan (MIT OR Apache-2.0); no kernel or util-linux code. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* JSON string body: printable ASCII kept, the rest escaped. */
static void json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c < 0x20 || c > 0x7e) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

struct result {
    int64_t rc;   /* bytes read/written, or -1 */
    int32_t err;  /* errno of the failed call */
    uint64_t ns;  /* duration of the read()/write() syscall */
    char buf[256];
};

/* Copy buffer: a shared mapping touched before any fork, so that the copies made right before
 * an attempt fault no page in (a private buffer would be copied on write after fork()). */
#define BUF_SIZE (1u << 20)
static char *gbuf;

struct pre {
    uint64_t pfn, npfn;
    const char *outdir;
    int memmap;
};

static int kcore(uint64_t vaddr, uint64_t len, const char *out);

/* Copy words [pfn, pfn+npfn) of a /proc/kpage* file to OUT. */
static int copy_words(const char *src, uint64_t pfn, uint64_t npfn, const char *out) {
    char *buf = gbuf;
    int fd = open(src, O_RDONLY), of = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || of < 0) { perror(src); return 2; }
    uint64_t off = pfn * 8, left = npfn * 8;
    while (left) {
        ssize_t r = pread(fd, buf, left < BUF_SIZE ? left : BUF_SIZE, (off_t)off);
        if (r <= 0) break;
        if (write(of, buf, (size_t)r) != r) { perror(out); return 2; }
        off += (uint64_t)r; left -= (uint64_t)r;
    }
    close(fd); close(of);
    return 0;
}

static int dump_pre(const struct pre *p) {
    char path[512];
    snprintf(path, sizeof path, "%s/kpageflags", p->outdir);
    if (copy_words("/proc/kpageflags", p->pfn, p->npfn, path)) return 2;
    snprintf(path, sizeof path, "%s/kpagecount", p->outdir);
    if (copy_words("/proc/kpagecount", p->pfn, p->npfn, path)) return 2;
    if (p->memmap) {
        snprintf(path, sizeof path, "%s/memmap", p->outdir);
        /* x86_64 vmemmap without KASLR, 64-byte struct pages */
        if (kcore(0xffffea0000000000ull + p->pfn * 64, p->npfn * 64, path)) return 2;
    }
    return 0;
}

/* One timed syscall in a child, so a kernel fault that kills the caller is survived. */
static int attempt(const char *tag, const char *path, const char *text, const struct pre *pre) {
    int pipefd[2], gofd[2];
    if (pipe(pipefd) || pipe(gofd)) { perror("pipe"); return 2; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        struct result r;
        memset(&r, 0, sizeof r);
        close(pipefd[0]);
        close(gofd[1]);
        int fd = open(path, text ? O_WRONLY : O_RDONLY);
        char go;
        /* wait until the parent has copied the pre-attempt state */
        if (read(gofd[0], &go, 1) != 1) _exit(4);
        if (fd < 0) {
            r.rc = -1; r.err = errno;
        } else {
            uint64_t t0 = now_ns();
            ssize_t n = text ? write(fd, text, strlen(text)) : read(fd, r.buf, sizeof r.buf - 1);
            r.ns = now_ns() - t0;
            r.rc = n; r.err = n < 0 ? errno : 0;
            close(fd);
        }
        ssize_t w = write(pipefd[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 3);
    }
    close(pipefd[1]);
    close(gofd[0]);
    struct result r;
    memset(&r, 0, sizeof r);
    int pre_rc = pre ? dump_pre(pre) : 0;
    if (write(gofd[1], "g", 1) != 1) perror("go");
    close(gofd[1]);
    ssize_t got = read(pipefd[0], &r, sizeof r);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("MSREC {\"type\":\"%s\",\"tag\":", text ? "write" : "read");
    json_str(tag, strlen(tag));
    printf(",\"path\":");
    json_str(path, strlen(path));
    if (got == (ssize_t)sizeof r) {
        printf(",\"rc\":%lld,\"errno\":%d,\"ns\":%llu", (long long)r.rc, r.err,
               (unsigned long long)r.ns);
        if (!text && r.rc > 0) {
            printf(",\"value\":");
            json_str(r.buf, (size_t)r.rc);
        }
    }
    if (pre) {
        printf(",\"pre\":{\"pfn\":%llu,\"npfn\":%llu,\"memmap\":%d,\"rc\":%d,\"dir\":",
               (unsigned long long)pre->pfn, (unsigned long long)pre->npfn, pre->memmap, pre_rc);
        json_str(pre->outdir, strlen(pre->outdir));
        printf("}");
    }
    printf(",\"signal\":%d}\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    fflush(stdout);
    return 0;
}

/* Copy [vaddr, vaddr+len) out of /proc/kcore into OUT. */
static int kcore(uint64_t vaddr, uint64_t len, const char *out) {
    int fd = open("/proc/kcore", O_RDONLY);
    if (fd < 0) { perror("/proc/kcore"); return 2; }
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG)) {
        fprintf(stderr, "/proc/kcore: not an ELF64 core\n");
        return 2;
    }
    int of = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (of < 0) { perror(out); return 2; }
    char *buf = gbuf;
    uint64_t done = 0;
    while (done < len) {
        uint64_t va = vaddr + done;
        int found = 0;
        for (int i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
                break;
            if (ph.p_type != PT_LOAD || va < ph.p_vaddr || va >= ph.p_vaddr + ph.p_memsz) continue;
            uint64_t n = ph.p_vaddr + ph.p_memsz - va;
            if (n > len - done) n = len - done;
            if (n > BUF_SIZE) n = BUF_SIZE;
            ssize_t r = pread(fd, buf, n, (off_t)(ph.p_offset + (va - ph.p_vaddr)));
            if (r <= 0) { perror("pread /proc/kcore"); return 2; }
            if (write(of, buf, (size_t)r) != r) { perror(out); return 2; }
            done += (uint64_t)r;
            found = 1;
            break;
        }
        if (!found) {
            fprintf(stderr, "/proc/kcore: %#llx is in no PT_LOAD segment\n", (unsigned long long)va);
            return 2;
        }
    }
    close(of);
    printf("MSREC {\"type\":\"kcore\",\"vaddr\":%llu,\"len\":%llu,\"out\":", (unsigned long long)vaddr,
           (unsigned long long)len);
    json_str(out, strlen(out));
    printf("}\n");
    return 0;
}

static int hog(const char *how, long mb) {
    size_t n = (size_t)mb << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 2; }
    if (!strcmp(how, "mlock") && mlock(p, n)) { perror("mlock"); return 2; }
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)(i >> 12);
    printf("MSREC {\"type\":\"hog\",\"how\":\"%s\",\"mb\":%ld}\n", how, mb);
    fflush(stdout);
    for (;;) pause();
}

int main(int argc, char **argv) {
    gbuf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (gbuf == MAP_FAILED) { perror("mmap"); return 2; }
    memset(gbuf, 0, BUF_SIZE);
    if (argc == 4 && !strcmp(argv[1], "read")) return attempt(argv[2], argv[3], NULL, NULL);
    if (argc == 5 && !strcmp(argv[1], "write")) return attempt(argv[2], argv[3], argv[4], NULL);
    if ((argc == 7 || argc == 8) && !strcmp(argv[1], "attempt")) {
        struct pre p = {strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0), argv[6],
                        argc == 8 && !strcmp(argv[7], "memmap")};
        return attempt(argv[2], argv[3], NULL, &p);
    }
    if (argc == 5 && !strcmp(argv[1], "kcore"))
        return kcore(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0), argv[4]);
    if (argc == 4 && !strcmp(argv[1], "hog")) return hog(argv[2], strtol(argv[3], NULL, 0));
    fprintf(stderr, "usage: mshelper read TAG PATH | write TAG PATH TEXT | attempt TAG PATH PFN NPFN OUTDIR [memmap] | kcore VADDR LEN OUT | hog anon|mlock MB\n");
    return 2;
}
