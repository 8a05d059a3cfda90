/*
 * nflogread: the user-space side of the NFLOG variant in the audit benchmark (scripts/bench/audit-recording.ts).
 * Binds to one NFLOG group over raw netlink (no library), asks for the first 64 bytes of each packet
 * (IP + TCP/UDP header: enough for source, destination and port), batched by the kernel, and counts the
 * packet messages it receives. It stands for the cheapest possible recording daemon: a real one would also
 * parse and aggregate, in Node. Runs only inside the benchmark's network namespaces.
 *
 *   nflogread GROUP OUT  prints "ready", then on SIGTERM/SIGINT writes {"messages":N,"packets":N,"enobufs":N} to OUT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static int fd;
static uint32_t seq;

static void put_attr(char *buf, size_t *off, uint16_t type, const void *data, uint16_t len) {
  struct nlattr *a = (struct nlattr *)(buf + *off);
  a->nla_type = type;
  a->nla_len = NLA_HDRLEN + len;
  memcpy(buf + *off + NLA_HDRLEN, data, len);
  *off += NLA_ALIGN(a->nla_len);
}

/* one NFULNL_MSG_CONFIG request with the given attributes; waits for the ack */
static void config(uint8_t family, uint16_t group, const char *attrs, size_t alen) {
  char buf[256];
  memset(buf, 0, sizeof buf);
  struct nlmsghdr *nh = (struct nlmsghdr *)buf;
  struct nfgenmsg *g = (struct nfgenmsg *)NLMSG_DATA(nh);
  nh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nh->nlmsg_seq = ++seq;
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  g->res_id = htons(group);
  size_t off = NLMSG_LENGTH(sizeof *g);
  memcpy(buf + NLMSG_ALIGN(off), attrs, alen);
  nh->nlmsg_len = NLMSG_ALIGN(off) + alen;
  if (send(fd, buf, nh->nlmsg_len, 0) < 0) {
    perror("nflogread: send");
    exit(1);
  }
  char ack[1024];
  ssize_t n = recv(fd, ack, sizeof ack, 0);
  struct nlmsghdr *r = (struct nlmsghdr *)ack;
  if (n > 0 && r->nlmsg_type == NLMSG_ERROR) {
    struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(r);
    if (e->error != 0) {
      fprintf(stderr, "nflogread: config failed: %s\n", strerror(-e->error));
      exit(1);
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: nflogread GROUP OUTFILE\n");
    return 2;
  }
  uint16_t group = (uint16_t)atoi(argv[1]);
  fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
  if (fd < 0) {
    perror("nflogread: socket");
    return 1;
  }
  int rcv = 8 << 20, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("nflogread: bind");
    return 1;
  }
  char attrs[128];
  size_t off = 0;
  struct nfulnl_msg_config_cmd cmd = {.command = NFULNL_CFG_CMD_BIND};
  put_attr(attrs, &off, NFULA_CFG_CMD, &cmd, sizeof cmd);
  config(AF_UNSPEC, group, attrs, off);

  off = 0;
  struct nfulnl_msg_config_mode mode = {.copy_range = htonl(64), .copy_mode = NFULNL_COPY_PACKET};
  put_attr(attrs, &off, NFULA_CFG_MODE, &mode, sizeof mode);
  uint32_t qthresh = htonl(64), timeout = htonl(10); /* batch up to 64 packets or 0.1 s */
  put_attr(attrs, &off, NFULA_CFG_QTHRESH, &qthresh, sizeof qthresh);
  put_attr(attrs, &off, NFULA_CFG_TIMEOUT, &timeout, sizeof timeout);
  config(AF_UNSPEC, group, attrs, off);

  struct sigaction act = {.sa_handler = on_signal}; /* no SA_RESTART: the signal must end a blocked recv() */
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  printf("ready\n");
  fflush(stdout);

  static char buf[1 << 17];
  unsigned long long messages = 0, packets = 0, enobufs = 0;
  while (!stop) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        enobufs++;
        continue;
      }
      perror("nflogread: recv");
      break;
    }
    messages++;
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (unsigned)n); nh = NLMSG_NEXT(nh, n)) {
      if ((nh->nlmsg_type & 0xff) == NFULNL_MSG_PACKET && (nh->nlmsg_type >> 8) == NFNL_SUBSYS_ULOG) packets++;
    }
  }
  FILE *out = fopen(argv[2], "w");
  if (!out) {
    perror("nflogread: fopen");
    return 1;
  }
  fprintf(out, "{\"messages\":%llu,\"packets\":%llu,\"enobufs\":%llu}\n", messages, packets, enobufs);
  fclose(out);
  return 0;
}
