/* Bad input gets a status code and a message naming it; every kind works through one API.
 * Run by tests/c_programs.rs with a scratch directory as argv[1]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm_ipc.h"

static int failures = 0;

#define EXPECT(call, want, fragment)                                                          \
    do {                                                                                      \
        int got_ = (call);                                                                    \
        const char *msg_ = shm_last_error();                                                  \
        if (got_ != (want) || strstr(msg_, (fragment)) == NULL) {                             \
            fprintf(stderr, "%s:%d: %s: got %s (%s), want %s with \"%s\"\n", __FILE__,        \
                    __LINE__, #call, shm_status_name(got_), msg_, #want, (fragment));          \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char path[4096];
    ShmProducer *tx = NULL;
    ShmConsumer *rx = NULL;

    snprintf(path, sizeof path, "%s/missing.ring", argv[1]);
    EXPECT(shm_consumer_open_file(path, 0, &rx), SHM_ERR_IO, "missing.ring");
    EXPECT(shm_consumer_open_file(NULL, 0, &rx), SHM_ERR_INVALID_ARGUMENT, "path is NULL");
    EXPECT(shm_consumer_open_file(path, 7, &rx), SHM_ERR_INVALID_ARGUMENT, "kind is 7");

    ShmConfig bad = shm_config_spsc(1000);
    snprintf(path, sizeof path, "%s/bad.ring", argv[1]);
    EXPECT(shm_producer_create_file(path, &bad, &tx), SHM_ERR_INVALID_ARGUMENT, "1000");
    bad.kind = 9;
    EXPECT(shm_producer_create_file(path, &bad, &tx), SHM_ERR_INVALID_ARGUMENT, "config.kind is 9");
    /* A failed create leaves nothing behind: the same path works with a good configuration. */
    ShmConfig good = shm_config_spsc(4096);
    EXPECT(shm_producer_create_file(path, &good, &tx), SHM_OK, "");
    EXPECT(shm_producer_send(tx, "x", 1, -2), SHM_ERR_INVALID_ARGUMENT, "timeout_ns is -2");
    shm_producer_close(tx);
    int bad_fd = -1;
    bad.kind = SHM_KIND_SPSC;
    EXPECT(shm_producer_create_memfd("capi-bad", &bad, &tx, &bad_fd), SHM_ERR_INVALID_ARGUMENT, "1000");
    if (bad_fd != -1) {
        fprintf(stderr, "a failed create_memfd handed out descriptor %d\n", bad_fd);
        failures++;
    }

    ShmConfig kinds[3] = {shm_config_spsc(4096), shm_config_mpsc(4096, 4),
                          shm_config_broadcast(4096, 4, SHM_POLICY_BLOCK)};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/kind%d.ring", argv[1], k);
        EXPECT(shm_consumer_create_file(path, &kinds[k], &rx), SHM_OK, "");
        EXPECT(shm_producer_open_file(path, 0, &tx), SHM_OK, "");
        if (shm_producer_kind(tx) != kinds[k].kind || shm_consumer_kind(rx) != kinds[k].kind) {
            fprintf(stderr, "kind %d: producer says %u, consumer %u\n", k, shm_producer_kind(tx),
                    shm_consumer_kind(rx));
            failures++;
        }
        char buf[8];
        size_t len = 0;
        const void *data;
        EXPECT(shm_consumer_try_recv(rx, buf, sizeof buf, &len), SHM_ERR_TIMEOUT, "empty");
        EXPECT(shm_consumer_read(rx, &data, &len, 1000000), SHM_ERR_TIMEOUT, "timed out");
        EXPECT(shm_consumer_release(rx), SHM_ERR_NOTHING_HELD, "no message is held");
        EXPECT(shm_producer_commit(tx), SHM_ERR_NOTHING_HELD, "no reservation");
        size_t too_large = shm_producer_max_message(tx) + 1;
        char *big = calloc(1, too_large);
        EXPECT(shm_producer_send(tx, big, too_large, 0), SHM_ERR_TOO_LARGE, "");
        free(big);
        EXPECT(shm_producer_send(tx, NULL, 3, 0), SHM_ERR_INVALID_ARGUMENT, "data is NULL");

        EXPECT(shm_producer_try_send(tx, "twelve bytes", 12), SHM_OK, "");
        EXPECT(shm_consumer_recv(rx, buf, sizeof buf, &len, 0), SHM_ERR_BUFFER_TOO_SMALL, "stays in the ring");
        if (len != 12) {
            fprintf(stderr, "kind %d: BUFFER_TOO_SMALL gave len %zu, want 12\n", k, len);
            failures++;
        }
        EXPECT(shm_consumer_read(rx, &data, &len, SHM_WAIT_FOREVER), SHM_OK, "");
        if (len != 12 || memcmp(data, "twelve bytes", 12) != 0) {
            fprintf(stderr, "kind %d: read gave %zu bytes\n", k, len);
            failures++;
        }
        EXPECT(shm_consumer_release(rx), SHM_OK, "");

        void *room;
        EXPECT(shm_producer_reserve(tx, 8, 0, &room), SHM_OK, "");
        memcpy(room, "in place", 8);
        EXPECT(shm_producer_commit(tx), SHM_OK, "");
        EXPECT(shm_producer_reserve(tx, 8, 0, &room), SHM_OK, "");
        EXPECT(shm_producer_abort(tx), SHM_OK, "");
        EXPECT(shm_consumer_recv(rx, buf, sizeof buf, &len, 0), SHM_OK, "");
        if (len != 8 || memcmp(buf, "in place", 8) != 0) {
            fprintf(stderr, "kind %d: reserve/commit gave %zu bytes\n", k, len);
            failures++;
        }
        shm_producer_close(tx);
        EXPECT(shm_consumer_try_recv(rx, buf, sizeof buf, &len), SHM_ERR_DISCONNECTED, "closed");
        shm_consumer_close(rx);
    }

    /* memfd: the descriptor opens a second end. */
    int fd = -1;
    ShmConfig spsc = shm_config_spsc(4096);
    EXPECT(shm_producer_create_memfd("capi-test", &spsc, &tx, &fd), SHM_OK, "");
    EXPECT(shm_consumer_open_memfd(fd, SHM_KIND_SPSC, &rx), SHM_OK, "");
    EXPECT(shm_producer_send(tx, "memfd", 5, SHM_WAIT_FOREVER), SHM_OK, "");
    char buf[8];
    size_t len = 0;
    EXPECT(shm_consumer_recv(rx, buf, sizeof buf, &len, SHM_WAIT_FOREVER), SHM_OK, "");
    EXPECT(shm_consumer_open_memfd(-1, 0, &rx), SHM_ERR_INVALID_ARGUMENT, "fd is -1");
    shm_producer_close(tx);
    shm_consumer_close(rx);
    shm_producer_close(NULL);
    shm_consumer_close(NULL);

    if (strcmp(shm_status_name(SHM_ERR_PEER_DEAD), "SHM_ERR_PEER_DEAD") != 0) failures++;
    printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
