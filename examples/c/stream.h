/* The message format of shm-demo's shm-producer / shm-consumer, for the C examples: a 24-byte
 * header (seq u64, send time u64, crc32 of the payload u32, 0 u32; little-endian), then a
 * payload whose byte i is (seq + i) mod 256. */
#ifndef SHM_EXAMPLE_STREAM_H
#define SHM_EXAMPLE_STREAM_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#define STREAM_HEADER 24

static inline uint32_t crc32_of(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Message `seq` of `size` bytes (at least STREAM_HEADER) into `buf`. */
static inline void stream_encode(uint8_t *buf, size_t size, uint64_t seq) {
    for (size_t i = 0; i < size - STREAM_HEADER; i++) buf[STREAM_HEADER + i] = (uint8_t)(seq + i);
    uint64_t t = now_ns();
    uint32_t crc = crc32_of(buf + STREAM_HEADER, size - STREAM_HEADER), zero = 0;
    memcpy(buf, &seq, 8); /* little-endian machines only, as the ring itself */
    memcpy(buf + 8, &t, 8);
    memcpy(buf + 16, &crc, 4);
    memcpy(buf + 20, &zero, 4);
}

/* Whether `msg` is a whole message; its sequence number into *seq. */
static inline int stream_decode(const uint8_t *msg, size_t len, uint64_t *seq) {
    uint32_t crc;
    if (len < STREAM_HEADER) return 0;
    memcpy(seq, msg, 8);
    memcpy(&crc, msg + 16, 4);
    return crc32_of(msg + STREAM_HEADER, len - STREAM_HEADER) == crc;
}

#endif
