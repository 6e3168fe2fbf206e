/* mshelper: the guest side of memscan's ground-truth harness (runs as a static binary inside a
 * QEMU guest, never on the host). Every result is one line on stdout:
 *   MSREC {"type":...,...}
 * which the host runner parses from the serial console.
 *
 *   mshelper read TAG PATH        read PATH once in a child; time the read() on CLOCK_MONOTONIC;
 *                                 report the value, errno and the child's exit signal (a read
 *                                 that hits a kernel BUG or oops kills the reader)
 *   mshelper write TAG PATH TEXT  the same for one write() (echo offline > memoryN/state)
 *   mshelper attempt TAG PATH PFN NPFN DEV@OFFSET [memmap]
 *                                 the same read, with this block's /proc/kpageflags and
 *                                 /proc/kpagecount (and raw struct pages from /proc/kcore)
 *                                 written at OFFSET of the attempts disk right before it: the reader is forked and
 *                                 has opened PATH and touched its buffers first, so nothing
 *                                 but the copy runs between the copy and the read
 *   mshelper kcore VADDR LEN OUT  copy LEN bytes of kernel virtual memory at VADDR out of
 *                                 /proc/kcore (ELF core: found through its PT_LOAD headers)
 *   mshelper vmemmap              print the vmemmap base (kallsyms + kcore, else default)
 *   mshelper run TAG OUT CMD...   run a client to completion, timed, output to OUT
 *   mshelper hog KIND MB          hold MB MiB, then sleep: anon (LRU pages), mlock (LRU,
 *                                 mlocked), thp (MADV_HUGEPAGE), hugetlb (MAP_HUGETLB from
 *                                 the pool), pipe (pipe buffers: kernel pages off the LRU),
 *                                 iouring (anon pages registered as io_uring fixed buffers:
 *                                 long-term pins, pin_user_pages FOLL_LONGTERM)
 *   mshelper owrite TAG PATH TEXT PFN NPFN DEV@OFFSET SECONDS
 *                                 a timed write (echo offline > state) after the same
 *                                 pre-attempt copy; SIGALRM after SECONDS interrupts it
 *                                 (the kernel's offline loop backs off on a signal: EINTR)
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
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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
    const char *after; /* where the same copy goes again right after a write, or NULL */
};

/* Write n bytes of the shared buffer at *pos of `of` (an O_DIRECT device or a file). */
static int put(int of, uint64_t *pos, uint64_t n) {
    if (pwrite(of, gbuf, (size_t)n, (off_t)*pos) != (ssize_t)n) { perror("pwrite"); return 2; }
    *pos += n;
    return 0;
}

/* Copy words [pfn, pfn+npfn) of a /proc/kpage* file to `of` at *pos. */
static int copy_words(const char *src, uint64_t pfn, uint64_t npfn, int of, uint64_t *pos) {
    int fd = open(src, O_RDONLY);
    if (fd < 0) { perror(src); return 2; }
    uint64_t off = pfn * 8, left = npfn * 8;
    while (left) {
        uint64_t want = left < BUF_SIZE ? left : BUF_SIZE;
        ssize_t r = pread(fd, gbuf, want, (off_t)off);
        if (r <= 0) r = 0; /* past max_pfn: zeroes keep the slot's layout */
        if ((uint64_t)r < want) { /* max_pfn inside the block: the rest reads as zeroes, and
                                   * O_DIRECT wants the whole aligned length written */
            memset(gbuf + r, 0, want - (uint64_t)r);
            r = (ssize_t)want;
        }
        if (put(of, pos, (uint64_t)r)) return 2;
        off += (uint64_t)r; left -= (uint64_t)r;
    }
    close(fd);
    return 0;
}

static int kcore_to(uint64_t vaddr, uint64_t len, int of, uint64_t *pos, uint64_t *gaps);

/* The vmemmap base /init found (MSH_VMEMMAP, from `mshelper vmemmap`): 64-byte struct pages
 * of pfn N at base + 64 N. */
static uint64_t vmemmap_base(void) {
    const char *e = getenv("MSH_VMEMMAP");
    return e ? strtoull(e, NULL, 0) : 0xffffea0000000000ull;
}

/* The pre-attempt copy: kpageflags, kpagecount, struct pages, one after another in a slot of
 * the attempts disk (O_DIRECT: writing it allocates no page cache in the blocks under test;
 * a copy written to the guest's tmpfs did, and the kernel then found those pages unmovable). */
static int dump_pre(const struct pre *p, const char *sink) {
    const char *at = strchr(sink, '@');
    if (!at) { fprintf(stderr, "attempt sink %s: want DEVICE@OFFSET\n", sink); return 2; }
    char dev[256];
    snprintf(dev, sizeof dev, "%.*s", (int)(at - sink), sink);
    uint64_t pos = strtoull(at + 1, NULL, 0), gaps = 0;
    int of = open(dev, O_WRONLY | O_DIRECT);
    if (of < 0) { perror(dev); return 2; }
    if (copy_words("/proc/kpageflags", p->pfn, p->npfn, of, &pos)) return 2;
    if (copy_words("/proc/kpagecount", p->pfn, p->npfn, of, &pos)) return 2;
    if (p->memmap && kcore_to(vmemmap_base() + p->pfn * 64, p->npfn * 64, of, &pos, &gaps))
        return 2;
    close(of);
    return 0;
}

/* One timed syscall in a child, so a kernel fault that kills the caller is survived. */
static void on_alarm(int sig) { (void)sig; }

static int attempt(const char *tag, const char *path, const char *text, const struct pre *pre,
                   unsigned alarm_s) {
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
        if (alarm_s) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_alarm; /* no SA_RESTART: the write returns EINTR */
            sigaction(SIGALRM, &sa, NULL);
        }
        if (fd < 0) {
            r.rc = -1; r.err = errno;
        } else {
            if (alarm_s) alarm(alarm_s);
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
    int pre_rc = pre ? dump_pre(pre, pre->outdir) : 0;
    if (write(gofd[1], "g", 1) != 1) perror("go");
    close(gofd[1]);
    ssize_t got = read(pipefd[0], &r, sizeof r);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    /* the post-attempt copy: the block's pages as the write left them (what it migrated,
     * freed, or offlined), to the other half of the attempt's slot */
    int after_rc = pre && pre->after ? dump_pre(pre, pre->after) : 0;
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
        if (pre->after) {
            printf(",\"after\":{\"rc\":%d,\"dir\":", after_rc);
            json_str(pre->after, strlen(pre->after));
            printf("}");
        }
    }
    printf(",\"signal\":%d}\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    fflush(stdout);
    return 0;
}

/* Copy [vaddr, vaddr+len) of kernel memory out of /proc/kcore to `of` at *pos. */
static int kcore_to(uint64_t vaddr, uint64_t len, int of, uint64_t *pos, uint64_t *gaps) {
    int fd = open("/proc/kcore", O_RDONLY);
    if (fd < 0) { perror("/proc/kcore"); return 2; }
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG)) {
        fprintf(stderr, "/proc/kcore: not an ELF64 core\n");
        return 2;
    }
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
            ssize_t r = pread(fd, gbuf, n, (off_t)(ph.p_offset + (va - ph.p_vaddr)));
            if (r != (ssize_t)n) { perror("pread /proc/kcore"); return 2; }
            if (put(of, pos, n)) return 2;
            done += n;
            found = 1;
            break;
        }
        if (!found) {
            /* vmemmap of a hole in RAM is not in kcore: zeroes up to the next segment (the
             * host's decoder keeps the model's own page for an all-zero struct page) */
            uint64_t next = vaddr + len;
            for (int i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
                    break;
                if (ph.p_type == PT_LOAD && ph.p_vaddr > va && ph.p_vaddr < next) next = ph.p_vaddr;
            }
            uint64_t n = next - va;
            while (n) {
                uint64_t k = n < BUF_SIZE ? n : BUF_SIZE;
                memset(gbuf, 0, k);
                if (put(of, pos, k)) return 2;
                n -= k; done += k; *gaps += k;
            }
        }
    }
    close(fd);
    return 0;
}

static int kcore(uint64_t vaddr, uint64_t len, const char *out) {
    int of = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (of < 0) { perror(out); return 2; }
    uint64_t pos = 0, gaps = 0;
    int rc = kcore_to(vaddr, len, of, &pos, &gaps);
    close(of);
    if (rc) return rc;
    printf("MSREC {\"type\":\"kcore\",\"vaddr\":%llu,\"len\":%llu,\"gap_bytes\":%llu,\"out\":",
           (unsigned long long)vaddr, (unsigned long long)len, (unsigned long long)gaps);
    json_str(out, strlen(out));
    printf("}\n");
    return 0;
}

/* Fill pipes with MB MiB of data: pipe buffers are order-0 kernel pages, not on the LRU. */
/* The vmemmap base: the value of the kernel variable vmemmap_base (its address from
 * /proc/kallsyms, its value from /proc/kcore) where the kernel has one (x86 with
 * RANDOMIZE_MEMORY, whose base moves with KASLR and with 5-level paging), else the 4-level
 * default 0xffffea0000000000. Prints it, and a record saying where it came from. */
static int vmemmap(void) {
    FILE *f = fopen("/proc/kallsyms", "r");
    unsigned long long addr = 0, base = 0xffffea0000000000ull;
    const char *src = "default";
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long a;
        char t, name[256];
        if (sscanf(line, "%llx %c %255s", &a, &t, name) == 3 && !strcmp(name, "vmemmap_base")) {
            addr = a;
            break;
        }
    }
    if (f) fclose(f);
    if (addr) {
        char path[] = "/tmp/.vmemmap_base";
        uint64_t pos = 0, gaps = 0;
        int of = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (of >= 0 && kcore_to(addr, 8, of, &pos, &gaps) == 0 && !gaps) {
            uint64_t v = 0;
            if (pread(of, &v, 8, 0) == 8 && v) { base = v; src = "kallsyms"; }
        }
        if (of >= 0) close(of);
        unlink(path);
    }
    fprintf(stderr, "MSREC {\"type\":\"vmemmap\",\"base\":%llu,\"source\":\"%s\"}\n", base, src);
    printf("%llu\n", base);
    return 0;
}

/* Run a client (lsmem, chmem, an agent script) to completion: wall time on CLOCK_MONOTONIC,
 * exit status or the signal that killed it (lsmem reading a poisoned block's removable on a
 * debug kernel), its output to OUT. */
static int run_client(const char *tag, const char *out, char **argv) {
    fflush(stdout);
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    uint64_t ns = now_ns() - t0;
    printf("MSREC {\"type\":\"client\",\"tag\":");
    json_str(tag, strlen(tag));
    printf(",\"ns\":%llu,\"exit\":%d,\"signal\":%d}\n", (unsigned long long)ns,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    fflush(stdout);
    return 0;
}

static int hog_pipes(long mb) {
    long want = mb << 20, have = 0;
    static char page[4096];
    memset(page, 'p', sizeof page);
    while (have < want) {
        int fds[2];
        if (pipe(fds)) break; /* out of descriptors: keep what we have */
        fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
        while (have < want && write(fds[1], page, sizeof page) == (ssize_t)sizeof page) have += 4096;
    }
    return (int)(have >> 20);
}

/* Register [p, p + n) as io_uring fixed buffers (1 MiB each): the kernel pins every page
 * for as long as the ring lives (io_sqe_buffers_register). Raw syscalls: no liburing. */
static int pin_with_io_uring(char *p, size_t n) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long ring = syscall(__NR_io_uring_setup, 4, &params);
    if (ring < 0) { perror("io_uring_setup"); return -1; }
    size_t chunk = 1u << 20, nr = (n + chunk - 1) / chunk;
    struct iovec *iov = calloc(nr, sizeof *iov);
    if (!iov) return -1;
    for (size_t i = 0; i < nr; i++) {
        iov[i].iov_base = p + i * chunk;
        iov[i].iov_len = (i + 1) * chunk <= n ? chunk : n - i * chunk;
    }
    if (syscall(__NR_io_uring_register, (int)ring, IORING_REGISTER_BUFFERS, iov, (unsigned)nr) < 0) {
        perror("io_uring_register");
        return -1;
    }
    return 0; /* the ring (and the pins) stay until the process ends */
}

static int hog(const char *how, long mb) {
    size_t n = (size_t)mb << 20;
    if (!strcmp(how, "pipe")) {
        int got = hog_pipes(mb);
        printf("MSREC {\"type\":\"hog\",\"how\":\"pipe\",\"mb\":%d}\n", got);
        fflush(stdout);
        for (;;) pause();
    }
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (!strcmp(how, "hugetlb")) flags |= MAP_HUGETLB;
    size_t align = 2u << 20;
    /* over-allocate so that a THP-sized aligned range exists */
    char *raw = mmap(NULL, n + (strcmp(how, "hugetlb") ? align : 0), PROT_READ | PROT_WRITE, flags, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); return 2; }
    char *p = raw;
    if (!strcmp(how, "thp")) {
        p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
        if (madvise(p, n, MADV_HUGEPAGE)) perror("madvise");
    }
    if (!strcmp(how, "mlock") && mlock(p, n)) { perror("mlock"); return 2; }
    /* order-0 pages for the pins: a pinned THP holds its pin in _pincount, not the refcount */
    if (!strcmp(how, "iouring") && madvise(p, n, MADV_NOHUGEPAGE)) perror("madvise");
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)(i >> 12);
    if (!strcmp(how, "iouring") && pin_with_io_uring(p, n)) return 2;
    printf("MSREC {\"type\":\"hog\",\"how\":\"%s\",\"mb\":%ld}\n", how, mb);
    fflush(stdout);
    for (;;) pause();
}

/* Trailing options of attempt/owrite: `memmap` (copy the struct pages too) and
 * `after=DEVICE@OFFSET` (copy the block again right after the syscall). */
static int options(struct pre *p, int n, char **v) {
    for (int i = 0; i < n; i++) {
        if (!strcmp(v[i], "memmap")) p->memmap = 1;
        else if (!strncmp(v[i], "after=", 6)) p->after = v[i] + 6;
        else { fprintf(stderr, "mshelper: unknown option %s\n", v[i]); return 1; }
    }
    return 0;
}

int main(int argc, char **argv) {
    gbuf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (gbuf == MAP_FAILED) { perror("mmap"); return 2; }
    memset(gbuf, 0, BUF_SIZE);
    if (argc == 4 && !strcmp(argv[1], "read")) return attempt(argv[2], argv[3], NULL, NULL, 0);
    if (argc == 5 && !strcmp(argv[1], "write")) return attempt(argv[2], argv[3], argv[4], NULL, 0);
    if (argc >= 7 && !strcmp(argv[1], "attempt")) {
        struct pre p = {strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0), argv[6], 0, NULL};
        if (options(&p, argc - 7, argv + 7)) return 2;
        return attempt(argv[2], argv[3], NULL, &p, 0);
    }
    if (argc >= 9 && !strcmp(argv[1], "owrite")) {
        struct pre p = {strtoull(argv[5], NULL, 0), strtoull(argv[6], NULL, 0), argv[7], 0, NULL};
        if (options(&p, argc - 9, argv + 9)) return 2;
        return attempt(argv[2], argv[3], argv[4], &p, (unsigned)strtoul(argv[8], NULL, 0));
    }
    if (argc == 5 && !strcmp(argv[1], "kcore"))
        return kcore(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0), argv[4]);
    if (argc == 4 && !strcmp(argv[1], "hog")) return hog(argv[2], strtol(argv[3], NULL, 0));
    if (argc == 2 && !strcmp(argv[1], "vmemmap")) return vmemmap();
    if (argc >= 5 && !strcmp(argv[1], "run")) return run_client(argv[2], argv[3], argv + 4);
    fprintf(stderr, "usage: mshelper read TAG PATH | write TAG PATH TEXT | attempt TAG PATH PFN NPFN OUTDIR [memmap] | owrite TAG PATH TEXT PFN NPFN OUTDIR SECONDS [memmap] [after=DEV@OFF] | kcore VADDR LEN OUT | hog KIND MB\n");
    return 2;
}
