/* Send shm-demo's stream into an existing ring of any kind.
 *
 *   terminal 1:  cargo run --release -p shm-demo --bin shm-consumer -- --path /tmp/ring --create --remove
 *   terminal 2:  ./producer /tmp/ring 1000000 100
 *
 * Build as consumer.c. It attaches (waiting for the file to appear, up to 10 s), then writes
 * every other message in place (shm_producer_reserve / shm_producer_commit) and copies the
 * others in (shm_producer_send), and closes: the consumer then sees the end of the stream. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "shm_ipc.h"
#include "stream.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s RING_FILE COUNT SIZE\n", argv[0]);
        return 2;
    }
    unsigned long long count = strtoull(argv[2], NULL, 10);
    size_t size = strtoull(argv[3], NULL, 10);
    if (size < STREAM_HEADER) size = STREAM_HEADER;
    ShmProducer *tx = NULL;
    int status = SHM_ERR_IO;
    for (int i = 0; i < 1000 && status == SHM_ERR_IO; i++) {
        status = shm_producer_open_file(argv[1], 0 /* any kind */, &tx);
        if (status == SHM_ERR_IO) usleep(10000);
    }
    if (status != SHM_OK) {
        fprintf(stderr, "producer: %s: %s\n", shm_status_name(status), shm_last_error());
        return 1;
    }
    uint8_t *buf = malloc(size);
    for (unsigned long long seq = 0; seq < count; seq++) {
        stream_encode(buf, size, seq);
        if (seq % 2 == 0) {
            void *room;
            status = shm_producer_reserve(tx, size, SHM_WAIT_FOREVER, &room);
            if (status != SHM_OK) break;
            /* The ring's bytes are shared: copy in with volatile stores, never leave a
             * pointer the consumer's process could make us read back. */
            volatile uint8_t *dst = room;
            for (size_t i = 0; i < size; i++) dst[i] = buf[i];
            status = shm_producer_commit(tx);
        } else {
            status = shm_producer_send(tx, buf, size, SHM_WAIT_FOREVER);
        }
        if (status != SHM_OK) break;
    }
    if (status != SHM_OK) fprintf(stderr, "producer: %s: %s\n", shm_status_name(status), shm_last_error());
    free(buf);
    shm_producer_close(tx);
    return status == SHM_OK ? 0 : 1;
}
