// What a wakeup costs on this host: two threads answer each other through a
// pair of eventfds (blocking reads), pinned to two CPUs or to one, with an
// optional idle gap before each round trip. A diagnostic of the machine
// (bench/RESULTS.md cites it), not of vale-ts: every vale-ts round trip that
// crosses processes pays this at least once.
//   gcc -O2 -pthread bench/host-wakeup.c -o /tmp/host-wakeup
//   /tmp/host-wakeup CPU_A CPU_B GAP_US [ROUNDS]     e.g. 0 1 5000
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int to_b, to_a, rounds;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void pin(pthread_t t, int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  if (pthread_setaffinity_np(t, sizeof s, &s) != 0) {
    fprintf(stderr, "cannot pin to CPU %d\n", cpu);
    exit(2);
  }
}

static void *answer(void *arg) {
  (void)arg;
  uint64_t v, one = 1;
  for (int i = 0; i < rounds; i++) {
    if (read(to_b, &v, 8) != 8 || write(to_a, &one, 8) != 8) exit(1);
  }
  return NULL;
}

static int by_value(const void *x, const void *y) {
  uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
  return p < q ? -1 : p > q;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CPU_A CPU_B GAP_US [ROUNDS]\n", argv[0]);
    return 2;
  }
  const int cpu_a = atoi(argv[1]), cpu_b = atoi(argv[2]), gap_us = atoi(argv[3]);
  rounds = argc > 4 ? atoi(argv[4]) : (gap_us ? 1000 : 20000);
  to_b = eventfd(0, 0);
  to_a = eventfd(0, 0);
  uint64_t *rtt = malloc(sizeof *rtt * (size_t)rounds);
  if (to_b < 0 || to_a < 0 || !rtt || rounds < 1) return 1;
  pthread_t b;
  pthread_create(&b, NULL, answer, NULL);
  pin(b, cpu_b);
  pin(pthread_self(), cpu_a);
  uint64_t v, one = 1;
  for (int i = 0; i < rounds; i++) {
    if (gap_us) usleep((useconds_t)gap_us);
    const uint64_t t0 = now_ns();
    if (write(to_b, &one, 8) != 8 || read(to_a, &v, 8) != 8) return 1;
    rtt[i] = now_ns() - t0;
  }
  pthread_join(b, NULL);
  qsort(rtt, (size_t)rounds, sizeof *rtt, by_value);
  double sum = 0;
  for (int i = 0; i < rounds; i++) sum += (double)rtt[i];
  // the tail: how often a wakeup took a millisecond or more (a vCPU the
  // hypervisor did not run again at once)
  int over_1ms = 0;
  for (int i = 0; i < rounds; i++) over_1ms += rtt[i] >= 1000000u;
  printf("CPUs %d,%d gap %d us, %d round trips (2 wakeups each): min %.1f avg %.1f p50 %.1f p99 %.1f p99.9 %.1f max %.1f us, %d of them >= 1 ms\n",
         cpu_a, cpu_b, gap_us, rounds, rtt[0] / 1e3, sum / rounds / 1e3, rtt[rounds / 2] / 1e3, rtt[rounds * 99 / 100] / 1e3,
         rtt[rounds * 999 / 1000] / 1e3, rtt[rounds - 1] / 1e3, over_1ms);
  return 0;
}
