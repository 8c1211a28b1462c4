/* Diagnostic only (bench/ingest.sh case "embedded_nodelay"): an LD_PRELOAD
 * shim that sets TCP_NODELAY on every socket a process connects or accepts.
 * rumqttd (the embedded broker) never sets it on the sockets it accepts, and
 * the collector's rumqttc client leaves it off, so small MQTT packets (acks,
 * PUBACKs) can wait for Nagle's algorithm and the peer's delayed ACK. Running
 * the same collector binary with and without this shim measures that cost
 * without changing the code.
 * Build: cc -shared -fPIC -O2 -o nodelay.so bench/nodelay_preload.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
  int one = 1;
  if (fd >= 0) /* fails harmlessly on non-TCP sockets */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept4(int s, struct sockaddr *a, socklen_t *l, int flags) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  int fd = real(s, a, l, flags);
  nodelay(fd);
  return fd;
}

int accept(int s, struct sockaddr *a, socklen_t *l) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  int fd = real(s, a, l);
  nodelay(fd);
  return fd;
}

int connect(int s, const struct sockaddr *a, socklen_t l) {
  static int (*real)(int, const struct sockaddr *, socklen_t);
  if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
  nodelay(s);
  return real(s, a, l);
}
