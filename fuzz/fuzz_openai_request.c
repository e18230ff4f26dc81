/* Fuzz target: arbitrary bytes as a POST /v1/chat/completions body. The parser /
 * validator must accept or reject with a well-formed error (status, type, message),
 * and an accepted request must format into a response and SSE chunks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    openai_limits lim = {4, 4, 100000};
    openai_request r;
    api_error e;
    if (!openai_parse_chat((const char *)data, size, &lim, &r, &e)) {
        if (e.status < 400 || e.status > 599 || !e.type || !e.message[0]) abort();
        char *j = openai_error_json(&e);
        free(j);
        return 0;
    }
    if (!r.chat.messages_json || r.chat.n_messages < 1 || r.chat.n_images > lim.max_images) abort();
    strbuf b = {0};
    for (int i = 0; i < r.chat.n_messages; i++)
        for (int k = 0; k < r.chat.messages[i].n_parts; k++) {
            const server_part *p = &r.chat.messages[i].parts[k];
            if (p->text) openai_sse_chunk(&b, "id", 0, r.model ? r.model : "m", NULL, p->text, p->text_len, NULL);
            else if (p->image < 0 || p->image >= r.chat.n_images || !r.image_urls[p->image]) abort();
        }
    openai_sse_done(&b);
    strbuf_free(&b);
    char *c = openai_completion_json("id", 0, "m", r.chat.messages_json, strlen(r.chat.messages_json), "stop", 1, 1);
    free(c);
    openai_request_free(&r);
    return 0;
}
