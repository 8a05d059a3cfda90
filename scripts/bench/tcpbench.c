/*
 * tcpbench: a tiny TCP load generator for egressfw's packet-path benchmark (scripts/bench.ts).
 * Compiled at bench time (gcc -O2 -pthread); runs only inside the benchmark's network namespaces.
 *
 *   tcpbench server ADDR PORT                  accept forever (until killed), 4 threads
 *   tcpbench crr    ADDR PORT SECONDS THREADS  connect / 1-byte request / 1-byte reply / close (RST), in a loop
 *   tcpbench stream ADDR PORT SECONDS          one connection, bulk send; the server reports the bytes it got
 *   tcpbench probe  ADDR PORT TIMEOUT_MS       one connection: prints ok / refused / timeout / error
 *
 * Every client run is bounded by SECONDS (and a hard alarm); results are one JSON line on stdout.
 * crr: {"conns":N,"errors":N,"seconds":S,"rate":R,"p50_us":..,"p90_us":..,"p99_us":..}  (connect() latency)
 * stream: {"bytes":N,"seconds":S,"gbit":G}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage target;
static socklen_t target_len;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void parse_addr(const char *host, const char *port) {
  memset(&target, 0, sizeof target);
  int p = atoi(port);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&target;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&target;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(p);
    target_len = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(p);
    target_len = sizeof *a6;
  } else {
    fprintf(stderr, "tcpbench: bad address %s\n", host);
    exit(2);
  }
}

static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* ---------------------------------------------------------------- server */

static int listener;

static void *serve(void *arg) {
  (void)arg;
  static __thread char buf[1 << 16];
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      perror("accept");
      continue;
    }
    char c;
    if (read(fd, &c, 1) == 1) {
      if (c == 'c') {
        if (write(fd, "k", 1) == 1) {
          while (read(fd, buf, sizeof buf) > 0) {
          }
        }
      } else if (c == 's') {
        uint64_t total = 0;
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0) total += (uint64_t)r;
        if (write(fd, &total, sizeof total) < 0) {
        }
      }
    }
    close(fd);
  }
  return NULL;
}

static int run_server(void) {
  listener = socket(target.ss_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (target.ss_family == AF_INET6) setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(listener, (struct sockaddr *)&target, target_len) < 0 || listen(listener, 4096) < 0) {
    perror("tcpbench server: bind/listen");
    return 1;
  }
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, serve, NULL);
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  return 0;
}

/* ---------------------------------------------------------------- crr */

#define MAX_SAMPLES (1 << 21)
struct worker {
  pthread_t t;
  double deadline;
  uint64_t conns, errors;
  uint32_t *lat; /* connect() latency, microseconds */
  size_t n;
};

static void *crr(void *arg) {
  struct worker *w = arg;
  struct linger lg = {1, 0};
  char c;
  while (now_s() < w->deadline) {
    int fd = socket(target.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
      w->errors++;
      continue;
    }
    double t0 = now_s();
    int ok = connect(fd, (struct sockaddr *)&target, target_len) == 0;
    double t1 = now_s();
    if (ok) ok = write(fd, "c", 1) == 1 && read(fd, &c, 1) == 1 && c == 'k';
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* RST: no TIME_WAIT, ports reused */
    close(fd);
    if (!ok) {
      w->errors++;
      usleep(1000);
      continue;
    }
    w->conns++;
    if (w->n < MAX_SAMPLES) w->lat[w->n++] = (uint32_t)((t1 - t0) * 1e6);
  }
  return NULL;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static int run_crr(double seconds, int threads) {
  struct worker *ws = calloc((size_t)threads, sizeof *ws);
  double start = now_s();
  for (int i = 0; i < threads; i++) {
    ws[i].deadline = start + seconds;
    ws[i].lat = malloc(MAX_SAMPLES * sizeof(uint32_t));
    pthread_create(&ws[i].t, NULL, crr, &ws[i]);
  }
  uint64_t conns = 0, errors = 0;
  size_t n = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ws[i].t, NULL);
    conns += ws[i].conns;
    errors += ws[i].errors;
    n += ws[i].n;
  }
  double elapsed = now_s() - start;
  uint32_t *all = malloc((n ? n : 1) * sizeof(uint32_t));
  size_t k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(all + k, ws[i].lat, ws[i].n * sizeof(uint32_t));
    k += ws[i].n;
  }
  qsort(all, n, sizeof(uint32_t), cmp_u32);
#define PCT(p) (n ? all[(size_t)((double)(n - 1) * (p))] : 0)
  printf("{\"conns\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"rate\":%.1f,\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u}\n",
         (unsigned long long)conns, (unsigned long long)errors, elapsed, conns / elapsed, PCT(0.5), PCT(0.9), PCT(0.99));
  return 0;
}

/* ---------------------------------------------------------------- stream */

static int run_stream(double seconds) {
  int fd = socket(target.ss_family, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&target, target_len) < 0) {
    perror("tcpbench stream: connect");
    return 1;
  }
  static char buf[1 << 18];
  memset(buf, 'x', sizeof buf);
  buf[0] = 's';
  double start = now_s(), deadline = start + seconds;
  while (now_s() < deadline) {
    if (write(fd, buf, sizeof buf) < 0) {
      perror("tcpbench stream: write");
      return 1;
    }
    buf[0] = 'x';
  }
  shutdown(fd, SHUT_WR);
  uint64_t total = 0;
  if (read_full(fd, &total, sizeof total) < 0) {
    fprintf(stderr, "tcpbench stream: no byte count from the server\n");
    return 1;
  }
  double elapsed = now_s() - start;
  close(fd);
  printf("{\"bytes\":%llu,\"seconds\":%.3f,\"gbit\":%.3f}\n", (unsigned long long)total, elapsed, total * 8 / elapsed / 1e9);
  return 0;
}

/* ---------------------------------------------------------------- probe */

static int run_probe(int timeout_ms) {
  int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int r = connect(fd, (struct sockaddr *)&target, target_len);
  const char *what = "ok";
  if (r < 0 && errno == EINPROGRESS) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) == 0) what = "timeout";
    else {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
      what = err == 0 ? "ok" : err == ECONNREFUSED ? "refused" : "error";
    }
  } else if (r < 0) what = errno == ECONNREFUSED ? "refused" : "error";
  printf("%s\n", what);
  close(fd);
  return strcmp(what, "ok") == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: tcpbench server|crr|stream|probe ADDR PORT [...]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  parse_addr(argv[2], argv[3]);
  if (!strcmp(argv[1], "server")) return run_server();
  double seconds = argc > 4 ? atof(argv[4]) : 1;
  if (strcmp(argv[1], "probe")) alarm((unsigned)seconds + 10); /* hard bound, whatever happens */
  if (!strcmp(argv[1], "crr")) return run_crr(seconds, argc > 5 ? atoi(argv[5]) : 1);
  if (!strcmp(argv[1], "stream")) return run_stream(seconds);
  if (!strcmp(argv[1], "probe")) return run_probe(atoi(argv[4]));
  fprintf(stderr, "tcpbench: unknown mode %s\n", argv[1]);
  return 2;
}
