// What a TPACKET_V2 receive ring costs the CPU that sends into it, and how
// much of that is epoll's entry on the ring's socket: a sender sendmmsg()s
// 60-byte frames into one end of a veth pair (PACKET_QDISC_BYPASS) for 3 s,
// the kernel delivers each one, on the sender's CPU, into a TPACKET_V2 ring
// on the other end, which a thread on another CPU drains at once. Prints the
// sender's CPU time per frame (its thread's user + system time). A
// diagnostic of the kernel path vale-ts's AF_PACKET ports sit on
// (bench/RESULTS.md, session 15), not a benchmark of vale-ts: the switch's
// in-line ports take their socket out of the epoll set while they stream
// because of what `epoll` vs `plain` shows here.
//   gcc -O2 -pthread bench/packet-ring-wake.c -o /tmp/packet-ring-wake
//   ip netns add prw && ip netns exec prw sh -c 'ip link add prw0 type veth peer name prw1 &&
//     ip link set prw0 up && ip link set prw1 up && for i in 1 2 3; do
//     /tmp/packet-ring-wake epoll; /tmp/packet-ring-wake plain; /tmp/packet-ring-wake none; done'; ip netns del prw
// epoll: the ring's socket is in an epoll set nobody waits on (the switch
// while it runs rounds); plain: in none; none: no ring at all (the floor:
// sendmmsg, veth and the stack dropping the frame). FRAME_SIZE=N sets the
// ring's frame size (default 2048).
#define _GNU_SOURCE
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK = 1 << 20, BLOCKS = 16, BATCH = 64, SECONDS = 3 };

static atomic_int stop;
static char *ring;
static unsigned frame_size, frames, per_block;
static unsigned long drained;

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  sched_setaffinity(0, sizeof s, &s);
}

// hands every frame back as soon as the kernel marks it ours
static void *drain(void *arg) {
  (void)arg;
  pin(1);
  for (unsigned i = 0; !atomic_load(&stop);) {
    struct tpacket2_hdr *h = (void *)(ring + (size_t)(i / per_block) * BLOCK + (size_t)(i % per_block) * frame_size);
    if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) {
      __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      drained++;
      i = (i + 1) % frames;
    } else {
      __builtin_ia32_pause();
    }
  }
  return NULL;
}

static int die(const char *what) {
  perror(what);
  return 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  const int with_ring = strcmp(mode, "none") != 0, with_epoll = strcmp(mode, "epoll") == 0;
  if (!with_epoll && strcmp(mode, "plain") != 0 && with_ring) {
    fprintf(stderr, "usage: %s epoll|plain|none (inside a namespace with veth prw0 <-> prw1 up)\n", argv[0]);
    return 2;
  }
  frame_size = getenv("FRAME_SIZE") ? (unsigned)atoi(getenv("FRAME_SIZE")) : 2048;
  const unsigned tx_if = if_nametoindex("prw0"), rx_if = if_nametoindex("prw1");
  if (!tx_if || !rx_if) return die("veth prw0/prw1");
  pthread_t t;
  if (with_ring) {
    const int rx = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (rx < 0) return die("socket");
    const int v = TPACKET_V2;
    if (setsockopt(rx, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) return die("PACKET_VERSION");
    per_block = BLOCK / frame_size;
    frames = per_block * BLOCKS;
    struct tpacket_req rq = {.tp_block_size = BLOCK, .tp_block_nr = BLOCKS, .tp_frame_size = frame_size, .tp_frame_nr = frames};
    if (setsockopt(rx, SOL_PACKET, PACKET_RX_RING, &rq, sizeof rq) < 0) return die("PACKET_RX_RING");
    ring = mmap(NULL, (size_t)BLOCK * BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, rx, 0);
    if (ring == MAP_FAILED) return die("mmap");
    struct sockaddr_ll sl = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)rx_if};
    if (bind(rx, (struct sockaddr *)&sl, sizeof sl) < 0) return die("bind");
    if (with_epoll) {
      const int ep = epoll_create1(0);
      struct epoll_event e = {.events = EPOLLIN};
      if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, rx, &e) < 0) return die("epoll");
    }
    pthread_create(&t, NULL, drain, NULL);
  }
  const int tx = socket(AF_PACKET, SOCK_RAW, 0);
  const int one = 1;
  if (tx < 0 || setsockopt(tx, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) return die("send socket");
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = (int)tx_if, .sll_halen = 6};
  unsigned char f[60] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5};  // local MACs, experimental ethertype
  struct mmsghdr m[BATCH];
  struct iovec io[BATCH];
  memset(m, 0, sizeof m);
  for (int i = 0; i < BATCH; i++) {
    io[i] = (struct iovec){f, sizeof f};
    m[i].msg_hdr = (struct msghdr){.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &io[i], .msg_iovlen = 1};
  }
  pin(0);
  struct timespec a, b;
  struct rusage r0, r1;
  clock_gettime(CLOCK_MONOTONIC, &a);
  getrusage(RUSAGE_THREAD, &r0);
  unsigned long sent = 0;
  do {
    const int n = sendmmsg(tx, m, BATCH, 0);
    if (n > 0) sent += (unsigned long)n;
    clock_gettime(CLOCK_MONOTONIC, &b);
  } while (b.tv_sec - a.tv_sec < SECONDS);
  getrusage(RUSAGE_THREAD, &r1);
  atomic_store(&stop, 1);
  if (with_ring) pthread_join(t, NULL);
  const double cpu_us = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 +
                        (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
  printf("%-5s sent %4.0f kpps, drained %5.1f%%, sender %.3f CPU us/frame\n", mode, sent / 1e3 / SECONDS,
         sent ? 100.0 * (double)drained / (double)sent : 0.0, cpu_us / (double)sent);
  return 0;
}
