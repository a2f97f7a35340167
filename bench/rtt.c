/*
 * Loopback reference points for bench/compare.sh, built by it with gcc.
 *
 *   rtt echo-server PORT REQ REPLY     reads REQ bytes, answers REPLY bytes, per connection
 *   rtt pg-server PORT                 a PostgreSQL wire server that answers every query, in
 *                                      the simple and the extended protocol, with one canned
 *                                      row (no parsing, no storage): the fastest server pgbench
 *                                      can talk to
 *   rtt echo-client PORT SECONDS REQ REPLY
 *                                      sends REQ bytes, waits for REPLY bytes, again and again
 *   rtt redis-client PORT SECONDS KEY VALUE_LEN
 *                                      GET KEY (a VALUE_LEN-byte value) again and again
 *
 * The clients keep one connection (TCP_NODELAY, like libpq and Redis), time every round trip
 * with CLOCK_MONOTONIC and print one line: "n=N p50_us=X p99_us=Y mean_us=Z".
 * The servers fork one process per connection and run until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int read_full(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
  size_t put = 0;
  while (put < len) {
    ssize_t n = write(fd, (const char *)buf + put, len - put);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    put += (size_t)n;
  }
  return 0;
}

/* ---- servers ---- */

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(fd, 128) < 0) die("listen");
  return fd;
}

/* Reaps finished sessions, so that their CPU time shows in this process's children's time. */
static void reap(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static void serve(int port, void (*session)(int fd, char **argv), char **argv) {
  struct sigaction sa = {.sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, NULL);
  int lfd = listen_on(port);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(lfd);
      nodelay(fd);
      session(fd, argv);
      _exit(0);
    }
    close(fd);
  }
}

static void echo_session(int fd, char **argv) {
  size_t req = (size_t)atol(argv[3]), reply = (size_t)atol(argv[4]);
  char *in = calloc(1, req), *out = calloc(1, reply);
  memset(out, 'x', reply);
  while (read_full(fd, in, req) == 0 && write_full(fd, out, reply) == 0) {
  }
}

/* PostgreSQL messages are a tag byte, a 4-byte big-endian length that counts itself, a body. */
static size_t put_msg(char *at, char tag, const char *body, uint32_t len) {
  at[0] = tag;
  uint32_t n = htonl(len + 4);
  memcpy(at + 1, &n, 4);
  memcpy(at + 5, body, len);
  return 5 + len;
}

/* RowDescription for one int4 column "abalance", as PostgreSQL sends it. */
static size_t row_description(char *at) {
  static const char body[] = "\x00\x01"
                             "abalance\x00"
                             "\x00\x00\x40\x00" /* table oid */
                             "\x00\x03"         /* attnum */
                             "\x00\x00\x00\x17" /* int4 */
                             "\x00\x04"         /* typlen */
                             "\xff\xff\xff\xff" /* typmod */
                             "\x00\x00";        /* text format */
  return put_msg(at, 'T', body, sizeof body - 1);
}

static size_t data_row_and_complete(char *at) {
  static const char row[] = "\x00\x01\x00\x00\x00\x01"
                            "0";
  size_t n = put_msg(at, 'D', row, sizeof row - 1);
  return n + put_msg(at + n, 'C', "SELECT 1", 9);
}

static size_t ready(char *at) { return put_msg(at, 'Z', "I", 1); }

static void pg_session(int fd, char **argv) {
  (void)argv;
  char buf[65536], out[4096];
  uint32_t len;
  /* Startup: an SSLRequest or GSSENCRequest is refused with 'N', then comes the real one. */
  for (;;) {
    if (read_full(fd, &len, 4) < 0) return;
    len = ntohl(len);
    if (len < 8 || len > sizeof buf) return;
    if (read_full(fd, buf, len - 4) < 0) return;
    uint32_t code;
    memcpy(&code, buf, 4);
    code = ntohl(code);
    if (code == 80877103 || code == 80877104) {
      if (write_full(fd, "N", 1) < 0) return;
      continue;
    }
    break;
  }
  size_t o = put_msg(out, 'R', "\x00\x00\x00\x00", 4);
  static const char *params[][2] = {{"server_version", "15.0"},
                                    {"server_encoding", "UTF8"},
                                    {"client_encoding", "UTF8"},
                                    {"DateStyle", "ISO, MDY"},
                                    {"integer_datetimes", "on"},
                                    {"standard_conforming_strings", "on"}};
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    char body[128];
    size_t a = strlen(params[i][0]) + 1, b = strlen(params[i][1]) + 1;
    memcpy(body, params[i][0], a);
    memcpy(body + a, params[i][1], b);
    o += put_msg(out + o, 'S', body, (uint32_t)(a + b));
  }
  o += put_msg(out + o, 'K', "\x00\x00\x00\x01\x00\x00\x00\x02", 8);
  o += ready(out + o);
  if (write_full(fd, out, o) < 0) return;
  /* Queries. Replies to the extended protocol are collected until Sync or Flush. */
  o = 0;
  for (;;) {
    char tag;
    if (read_full(fd, &tag, 1) < 0 || read_full(fd, &len, 4) < 0) return;
    len = ntohl(len);
    if (len < 4 || len - 4 > sizeof buf) return;
    if (read_full(fd, buf, len - 4) < 0) return;
    switch (tag) {
    case 'Q':
      o += row_description(out + o);
      o += data_row_and_complete(out + o);
      o += ready(out + o);
      break;
    case 'P':
      o += put_msg(out + o, '1', "", 0);
      break;
    case 'B':
      o += put_msg(out + o, '2', "", 0);
      break;
    case 'D':
      if (buf[0] == 'S') o += put_msg(out + o, 't', "\x00\x01\x00\x00\x00\x17", 6);
      o += row_description(out + o);
      break;
    case 'E':
      o += data_row_and_complete(out + o);
      break;
    case 'C':
      o += put_msg(out + o, '3', "", 0);
      break;
    case 'S':
      o += ready(out + o);
      break;
    case 'H':
      break;
    case 'X':
      return;
    default:
      return;
    }
    if (tag == 'Q' || tag == 'S' || tag == 'H' || o > sizeof out - 512) {
      if (write_full(fd, out, o) < 0) return;
      o = 0;
    }
  }
}

/* ---- clients ---- */

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  nodelay(fd);
  return fd;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void run_client(int port, double seconds, const char *req, size_t req_len,
                       size_t reply_len) {
  int fd = connect_to(port);
  char *in = malloc(reply_len);
  size_t cap = 1 << 20, n = 0;
  double *lat = malloc(cap * sizeof *lat), sum = 0;
  double end = now_us() + seconds * 1e6;
  for (;;) {
    double t0 = now_us();
    if (t0 >= end) break;
    if (write_full(fd, req, req_len) < 0 || read_full(fd, in, reply_len) < 0) die("round trip");
    double dt = now_us() - t0;
    if (n == cap) {
      cap *= 2;
      lat = realloc(lat, cap * sizeof *lat);
    }
    lat[n++] = dt;
    sum += dt;
  }
  if (n == 0) {
    fprintf(stderr, "no round trip completed\n");
    exit(1);
  }
  qsort(lat, n, sizeof *lat, cmp_double);
  printf("n=%zu p50_us=%.1f p99_us=%.1f mean_us=%.1f\n", n, lat[(n - 1) / 2],
         lat[(size_t)((double)(n - 1) * 0.99)], sum / (double)n);
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "echo-server") == 0) {
    serve(atoi(argv[2]), echo_session, argv);
  } else if (argc >= 3 && strcmp(argv[1], "pg-server") == 0) {
    serve(atoi(argv[2]), pg_session, argv);
  } else if (argc >= 6 && strcmp(argv[1], "echo-client") == 0) {
    size_t req = (size_t)atol(argv[4]);
    char *msg = malloc(req);
    memset(msg, 'q', req);
    run_client(atoi(argv[2]), atof(argv[3]), msg, req, (size_t)atol(argv[5]));
  } else if (argc >= 6 && strcmp(argv[1], "redis-client") == 0) {
    const char *key = argv[4];
    size_t value_len = (size_t)atol(argv[5]);
    char req[512], digits[32];
    int req_len = snprintf(req, sizeof req, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);
    int d = snprintf(digits, sizeof digits, "%zu", value_len);
    /* "$<len>\r\n<value>\r\n" */
    run_client(atoi(argv[2]), atof(argv[3]), req, (size_t)req_len,
               1 + (size_t)d + 2 + value_len + 2);
  } else {
    fprintf(stderr, "usage: see the comment at the top of bench/rtt.c\n");
    return 2;
  }
  return 0;
}
