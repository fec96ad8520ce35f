/* libsodium's raw Ed25519 verify rate in a tight loop (the ceiling for /auth with tokens it has
 * never seen): 1024 different 300-byte messages and their signatures, verified in turn for about
 * `seconds` of this process's CPU time; prints verifications per CPU second. Distinct
 * signatures, as the server sees them: one signature verified again and again runs about twice
 * as fast (the variable-time scalar multiplication's branches are learnt by the predictor).
 * CPU time, not wall time: this machine is shared, and perf/auth-vs-hello.sh compares it with
 * the server's requests per CPU second. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 3.0;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  enum { kMessages = 1024 };
  static unsigned char msg[kMessages][300], sig[kMessages][crypto_sign_BYTES];
  if (sodium_init() < 0) return 1;
  crypto_sign_keypair(pk, sk);
  for (int i = 0; i < kMessages; ++i) {
    randombytes_buf(msg[i], sizeof msg[i]);
    crypto_sign_detached(sig[i], NULL, msg[i], sizeof msg[i], sk);
  }
  unsigned long n = 0;
  double t0 = now(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < 100; ++i) {
      unsigned long k = (n + (unsigned long)i) % kMessages;
      if (crypto_sign_verify_detached(sig[k], msg[k], sizeof msg[k], pk) != 0) return 1;
    }
    n += 100;
    t = now();
  }
  printf("%.0f\n", (double)n / (t - t0));
  return 0;
}
