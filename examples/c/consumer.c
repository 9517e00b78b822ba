/* Receive shm-demo's stream from a ring of any kind and verify it.
 *
 *   terminal 1:  cargo run --release -p shm-demo --bin shm-producer -- --path /tmp/ring --count 1000000
 *   terminal 2:  ./consumer /tmp/ring
 *
 * Build (from the repository root):
 *   cargo build --release -p shm-capi
 *   gcc -O2 -Wall -I crates/shm-capi/include examples/c/consumer.c target/release/libshmipc.a -lm -o consumer
 *
 * It attaches (waiting for the file to appear, up to 10 s), prints "ready" on stdout, then
 * takes every other message in place (shm_consumer_read / shm_consumer_release) and copies the
 * others out (shm_consumer_recv), until the producer closes. It prints
 * "received N, lost L, corrupt C" and exits 0 when L and C are 0. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "shm_ipc.h"
#include "stream.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s RING_FILE\n", argv[0]);
        return 2;
    }
    ShmConsumer *rx = NULL;
    int status = SHM_ERR_IO;
    for (int i = 0; i < 1000 && status == SHM_ERR_IO; i++) {
        status = shm_consumer_open_file(argv[1], 0 /* any kind */, &rx);
        if (status == SHM_ERR_IO) usleep(10000);
    }
    if (status != SHM_OK) {
        fprintf(stderr, "consumer: %s: %s\n", shm_status_name(status), shm_last_error());
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    size_t cap = shm_consumer_max_message(rx);
    uint8_t *buf = malloc(cap);
    uint64_t received = 0, lost = 0, corrupt = 0, next = 0;
    for (;;) {
        const void *data;
        size_t len;
        uint64_t seq;
        int ok;
        if (received % 2 == 0) {
            status = shm_consumer_read(rx, &data, &len, 5000000000LL);
            if (status != SHM_OK) break;
            ok = stream_decode(data, len, &seq);
            shm_consumer_release(rx);
        } else {
            status = shm_consumer_recv(rx, buf, cap, &len, 5000000000LL);
            if (status != SHM_OK) break;
            ok = stream_decode(buf, len, &seq);
        }
        received++;
        if (!ok) {
            corrupt++;
            continue;
        }
        if (seq > next) lost += seq - next;
        next = seq + 1;
    }
    if (status != SHM_ERR_DISCONNECTED) {
        fprintf(stderr, "consumer: %s: %s\n", shm_status_name(status), shm_last_error());
    }
    printf("received %llu, lost %llu, corrupt %llu\n", (unsigned long long)received, (unsigned long long)lost,
           (unsigned long long)corrupt);
    free(buf);
    shm_consumer_close(rx);
    return status == SHM_ERR_DISCONNECTED && lost == 0 && corrupt == 0 ? 0 : 1;
}
