// What a PACKET_TX_RING would save vale-ts's in-line AF_PACKET ports per
// 60-byte frame against the sendmmsg they use (issue 12's 60 B target;
// bench/RESULTS.md, session 24). One thread, pinned to one CPU, sends N
// 60-byte UDP frames (dport 9) into a veth whose peer, in another
// namespace, counts and drops them at its ingress with nftables (the sink of
// bench/linux-if.bench.ts), on a socket set up as the driver's send socket is
// (PACKET_VNET_HDR, PACKET_QDISC_BYPASS, bound with protocol 0), and prints
// the thread's CPU time per frame (CLOCK_THREAD_CPUTIME_ID: this kernel has
// no IRQ time accounting, so the veth, the peer's softirq and the sink that
// run inside the send are in it) and the wall time per frame.
//   mmsg:  sendmmsg, 64 messages of two iovecs each (a zeroed 10-byte
//          virtio-net header and the frame, as the driver's pump_out sends)
//   ring:  a TPACKET_V2 tx ring (256-byte frames); 64 frames written (the
//          header with hdr_len = 60, then the frame), one send(fd, NULL, 0,
//          MSG_DONTWAIT) per batch. hdr_len is the kernel's copylen in
//          tpacket_fill_skb: the whole frame goes into the skb's linear part
//          and no ring page is attached as a frag.
//   frags: as ring with hdr_len = 0: the kernel copies the 14-byte Ethernet
//          header and attaches the other 46 bytes as a frag of the ring's page
//          (get_page per frame) -- for comparison; unsafe through a veth for
//          the switch (the ring frame is reused once the skb is orphaned).
// Usage: packet-tx-ring IFNAME DST_MAC MODE FRAMES [CPU]; prints one line:
//   MODE frames=N cpu_ns_per_frame=X wall_ns_per_frame=Y retries=R
// bench/packet-tx-ring.sh builds it, makes the namespace, veth and sink,
// alternates the modes and removes what it made.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 64, FRAME = 60, VNET = sizeof(struct virtio_net_hdr), RING_FRAME = 256, RING_FRAMES = 1024, RING_BLOCK = 4096 };

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

// Ethernet + IPv4 + UDP to port 9, 60 bytes, the IPv4 checksum filled in
static void build_frame(uint8_t *f, const uint8_t dst[6]) {
  memset(f, 0, FRAME);
  memcpy(f, dst, 6);
  const uint8_t src[6] = {0x02, 0, 0, 0x24, 0x01, 0x01};
  memcpy(f + 6, src, 6);
  f[12] = 0x08, f[13] = 0x00;
  uint8_t *ip = f + 14;
  ip[0] = 0x45, ip[8] = 64, ip[9] = 17;
  const uint16_t tot = htons(FRAME - 14);
  memcpy(ip + 2, &tot, 2);
  const uint8_t s[4] = {10, 24, 1, 1}, d[4] = {10, 24, 1, 2};
  memcpy(ip + 12, s, 4), memcpy(ip + 16, d, 4);
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += (ip[i] << 8) | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = (uint8_t)(~sum >> 8), ip[11] = (uint8_t)~sum;
  uint8_t *udp = ip + 20;
  udp[1] = 9, udp[3] = 9;  // ports 9 -> 9
  const uint16_t ul = htons(FRAME - 34);
  memcpy(udp + 4, &ul, 2);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s IFNAME DST_MAC mmsg|ring|frags FRAMES [CPU]\n", argv[0]);
    return 2;
  }
  const char *ifn = argv[1], *mode = argv[3];
  const long n = atol(argv[4]);
  const int cpu = argc > 5 ? atoi(argv[5]) : 0;
  uint8_t dst[6];
  if (sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2], &dst[3], &dst[4], &dst[5]) != 6) {
    fprintf(stderr, "DST_MAC: six hex bytes, aa:bb:cc:dd:ee:ff\n");
    return 2;
  }
  const int ring = !strcmp(mode, "ring") || !strcmp(mode, "frags");
  if (!ring && strcmp(mode, "mmsg")) {
    fprintf(stderr, "MODE: mmsg, ring or frags\n");
    return 2;
  }
  cpu_set_t cs;
  CPU_ZERO(&cs);
  CPU_SET(cpu, &cs);
  if (sched_setaffinity(0, sizeof cs, &cs) < 0) die("sched_setaffinity");

  const int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) die("socket");
  const int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) die("PACKET_VNET_HDR");
  if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("PACKET_QDISC_BYPASS");
  uint8_t *map = NULL;
  if (ring) {
    const int v = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    struct tpacket_req req = {.tp_block_size = RING_BLOCK, .tp_block_nr = RING_FRAMES * RING_FRAME / RING_BLOCK, .tp_frame_size = RING_FRAME, .tp_frame_nr = RING_FRAMES};
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("PACKET_TX_RING");
    map = mmap(NULL, (size_t)RING_FRAMES * RING_FRAME, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) die("mmap");
  }
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(ifn)};
  if (!ll.sll_ifindex) die(ifn);
  if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind");

  uint8_t frame[FRAME];
  build_frame(frame, dst);
  static uint8_t hdr[VNET];  // zeroed: no offload asked
  // the kernel looks for data at tp_hdrlen - sizeof(sockaddr_ll)
  const size_t data_off = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
  const uint16_t hdr_len = !strcmp(mode, "ring") ? FRAME : 0;

  long sent = 0, retries = 0;
  unsigned fill = 0, taken = 0;  // ring: next slot to fill, oldest slot not yet seen taken
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH][2];
  for (int j = 0; j < BATCH; j++) {
    iov[j][0] = (struct iovec){hdr, VNET};
    iov[j][1] = (struct iovec){frame, FRAME};
    msgs[j] = (struct mmsghdr){.msg_hdr = {.msg_iov = iov[j], .msg_iovlen = 2}};
  }
  const double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
  while (sent < n) {
    const int m = n - sent < BATCH ? (int)(n - sent) : BATCH;
    if (!ring) {
      const int r = sendmmsg(fd, msgs, m, MSG_DONTWAIT);
      if (r < 0) {
        if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) die("sendmmsg");
        retries++;
        continue;
      }
      sent += r;
      continue;
    }
    // fill up to a batch of frames the kernel has handed back (AVAILABLE);
    // frames it pushed back stay SEND_REQUEST and go first on the next send
    long queued = 0;  // filled, not yet seen taken
    for (unsigned k = taken; k != fill; k = (k + 1) % RING_FRAMES) queued++;
    for (int f = 0; f < BATCH && sent + queued < n; f++, queued++) {
      struct tpacket2_hdr *h = (void *)(map + (size_t)fill * RING_FRAME);
      if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) break;
      uint8_t *d = (uint8_t *)h + data_off;
      struct virtio_net_hdr vh = {.hdr_len = hdr_len};
      memcpy(d, &vh, VNET);
      memcpy(d + VNET, frame, FRAME);
      h->tp_len = VNET + FRAME;
      __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
      fill = (fill + 1) % RING_FRAMES;
    }
    if (send(fd, NULL, 0, MSG_DONTWAIT) < 0) {
      if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) die("send");
      retries++;
    }
    // taken: left SEND_REQUEST (SENDING, or AVAILABLE once the skb is freed)
    while (taken != fill) {
      struct tpacket2_hdr *h = (void *)(map + (size_t)taken * RING_FRAME);
      const unsigned st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
      if (st == TP_STATUS_WRONG_FORMAT) {
        fprintf(stderr, "slot %u: TP_STATUS_WRONG_FORMAT\n", taken);
        return 1;
      }
      if (st == TP_STATUS_SEND_REQUEST) break;
      taken = (taken + 1) % RING_FRAMES;
      sent++;
    }
  }
  const double c1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
  printf("%s frames=%ld cpu_ns_per_frame=%.1f wall_ns_per_frame=%.1f retries=%ld\n", mode, sent, (c1 - c0) / sent, (w1 - w0) / sent, retries);
  return 0;
}
