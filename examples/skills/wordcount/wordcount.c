/* wordcount: {"text": "..."} in, {"words": N, "characters": N} out. */
#include <stdio.h>
#include <string.h>

static char input[1 << 20];

int main(void) {
    size_t n = fread(input, 1, sizeof input - 1, stdin);
    input[n] = 0;
    char *p = strstr(input, "\"text\"");
    if (!p) {
        fprintf(stderr, "wordcount: the input has no \"text\"\n");
        return 2;
    }
    p = strchr(p + 6, '"');
    if (!p) return 2;
    long words = 0, chars = 0;
    int in_word = 0;
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;            /* an escaped character counts as one */
        if ((*p & 0xC0) != 0x80) chars++;         /* count UTF-8 characters, not bytes */
        int space = *p == ' ' || *p == '\n' || *p == '\t' || *p == 'n' * (p[-1] == '\\');
        if (space) in_word = 0;
        else if (!in_word) { in_word = 1; words++; }
    }
    fprintf(stderr, "wordcount: %ld words\n", words);
    printf("{\"words\": %ld, \"characters\": %ld}\n", words, chars);
    return 0;
}
