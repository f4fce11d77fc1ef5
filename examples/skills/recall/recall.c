/* recall: {"query": "...", "limit": N} in; the node's matching memories out, through the
   host function cis.memory_search (the manifest grants memory_read). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((import_module("cis"), import_name("memory_search")))
int64_t cis_memory_search(const char *request, int32_t length);

/* the host asks for a buffer to write its answer into */
__attribute__((export_name("cis_alloc")))
void *cis_alloc(int32_t size) { return malloc((size_t)size); }

static char input[1 << 16];

int main(void) {
    size_t n = fread(input, 1, sizeof input, stdin);
    int64_t answer = cis_memory_search(input, (int32_t)n);
    char *at = (char *)(uintptr_t)(answer >> 32);
    int32_t length = (int32_t)(answer & 0xffffffff);
    fprintf(stderr, "recall: %d bytes from the node\n", length);
    printf("{\"found\": %.*s}\n", length, at);
    return 0;
}
