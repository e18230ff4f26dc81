#include "train/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

static const char IMAGE_MARK[] = "<image>";

void conv_sample_free(conv_sample *s) {
    cJSON_Delete(s->messages);
    for (int i = 0; i < s->n_images; i++) free(s->images[i]);
    free(s->images);
    memset(s, 0, sizeof *s);
}

static cJSON *text_part(const char *text, size_t n) {
    cJSON *p = cJSON_CreateObject();
    char *t = strndup(text, n);
    if (!p || !t) {
        cJSON_Delete(p);
        free(t);
        return NULL;
    }
    cJSON_AddStringToObject(p, "type", "text");
    cJSON_AddStringToObject(p, "text", t);
    free(t);
    return p;
}

static cJSON *image_part(void) {
    cJSON *p = cJSON_CreateObject();
    if (p) cJSON_AddStringToObject(p, "type", "image");
    return p;
}

/* A string content with "<image>" markers → parts in the same order. */
static cJSON *split_markers(const char *s) {
    cJSON *parts = cJSON_CreateArray();
    const char *p = s;
    while (parts) {
        const char *m = strstr(p, IMAGE_MARK);
        size_t n = m ? (size_t)(m - p) : strlen(p);
        if (n) cJSON_AddItemToArray(parts, text_part(p, n));
        if (!m) break;
        cJSON_AddItemToArray(parts, image_part());
        p = m + sizeof IMAGE_MARK - 1;
    }
    return parts;
}

/* LLaVA: remove every "<image>" and put one image first (the text stripped), as preprocess_multimodal. */
static cJSON *llava_parts(const char *s, int *n_markers) {
    size_t len = strlen(s);
    char *t = malloc(len + 1), *o = t;
    if (!t) return NULL;
    *n_markers = 0;
    for (const char *p = s; *p;) {
        if (!strncmp(p, IMAGE_MARK, sizeof IMAGE_MARK - 1)) {
            (*n_markers)++;
            p += sizeof IMAGE_MARK - 1;
        } else *o++ = *p++;
    }
    *o = '\0';
    cJSON *parts = cJSON_CreateArray();
    if (parts && *n_markers) {
        char *b = t, *e = t + strlen(t);
        while (*b == ' ' || *b == '\n' || *b == '\t' || *b == '\r') b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r')) e--;
        cJSON_AddItemToArray(parts, image_part());
        cJSON_AddItemToArray(parts, text_part(b, (size_t)(e - b)));
    } else if (parts) cJSON_AddItemToArray(parts, text_part(t, strlen(t)));
    free(t);
    return parts;
}

static int count_images(const cJSON *messages) {
    int n = 0;
    for (const cJSON *m = messages->child; m; m = m->next)
        for (const cJSON *p = json_get(m, "content") ? json_get(m, "content")->child : NULL; p; p = p->next)
            if (!strcmp(json_string(p, "type", ""), "image")) n++;
    return n;
}

static vlmc_status add_image_path(conv_sample *s, const char *root, const char *rel, const char *where, vlmc_error *err) {
    char **ni = realloc(s->images, (size_t)(s->n_images + 1) * sizeof *ni);
    if (!ni) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    s->images = ni;
    if (!rel[0]) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: empty image path", where);
    s->images[s->n_images] = rel[0] == '/' || !root ? strdup(rel) : path_join(root, rel);
    if (!s->images[s->n_images]) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    s->n_images++;
    return VLMC_OK;
}

vlmc_status conv_sample_from_json(const cJSON *row, const char *root, const char *where, conv_sample *s,
                                  vlmc_error *err) {
    memset(s, 0, sizeof *s);
    if (!cJSON_IsObject(row)) return vlmc_fail(err, VLMC_ERR_FORMAT, "%s: row is not a JSON object", where);
    const cJSON *msgs = json_get(row, "messages"), *convs = json_get(row, "conversations");
    vlmc_status st = VLMC_OK;
    s->messages = cJSON_CreateArray();
    if (!s->messages) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
    if (cJSON_IsArray(msgs)) {
        int i = 0;
        for (const cJSON *m = msgs->child; m && !st; m = m->next, i++) {
            const char *role = json_string(m, "role", NULL);
            const cJSON *content = json_get(m, "content");
            if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: message %d: role must be user, assistant or system", where, i);
                break;
            }
            cJSON *parts;
            if (cJSON_IsString(content)) parts = split_markers(content->valuestring);
            else if (cJSON_IsArray(content)) {
                parts = cJSON_Duplicate(content, 1);
                for (const cJSON *p = parts ? parts->child : NULL; p && !st; p = p->next) {
                    const char *type = json_string(p, "type", "");
                    if (strcmp(type, "image") && !(strcmp(type, "text") == 0 && cJSON_IsString(json_get(p, "text"))))
                        st = vlmc_fail(err, VLMC_ERR_FORMAT,
                                       "%s: message %d: content parts must be {\"type\":\"image\"} or {\"type\":\"text\",\"text\":...}",
                                       where, i);
                }
            } else {
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: message %d: content must be a string or a list of parts", where, i);
                break;
            }
            cJSON *msg = cJSON_CreateObject();
            if (!parts || !msg) {
                cJSON_Delete(parts);
                cJSON_Delete(msg);
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                break;
            }
            cJSON_AddStringToObject(msg, "role", role);
            cJSON_AddItemToObject(msg, "content", parts);
            cJSON_AddItemToArray(s->messages, msg);
        }
    } else if (cJSON_IsArray(convs)) {
        int i = 0;
        for (const cJSON *c = convs->child; c && !st; c = c->next, i++) {
            const char *from = json_string(c, "from", NULL), *value = json_string(c, "value", NULL);
            const char *role = !from ? NULL : !strcmp(from, "human") || !strcmp(from, "user") ? "user"
                               : !strcmp(from, "gpt") || !strcmp(from, "assistant")          ? "assistant"
                               : !strcmp(from, "system")                                     ? "system"
                                                                                             : NULL;
            if (!role || !value) {
                st = vlmc_fail(err, VLMC_ERR_FORMAT,
                               "%s: conversation turn %d needs \"from\" (human, gpt or system) and a string \"value\"", where, i);
                break;
            }
            int n_markers = 0;
            cJSON *parts = llava_parts(value, &n_markers), *msg = cJSON_CreateObject();
            if (!parts || !msg) {
                cJSON_Delete(parts);
                cJSON_Delete(msg);
                st = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
                break;
            }
            if (n_markers > 1)
                st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: conversation turn %d has %d <image> markers (LLaVA rows hold one image)",
                               where, i, n_markers);
            cJSON_AddStringToObject(msg, "role", role);
            cJSON_AddItemToObject(msg, "content", parts);
            cJSON_AddItemToArray(s->messages, msg);
        }
    } else {
        st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: row has neither \"messages\" nor \"conversations\"", where);
    }
    /* Images: a list ("images") or one path ("image"). */
    const cJSON *imgs = json_get(row, "images"), *img = json_get(row, "image");
    if (!st && cJSON_IsArray(imgs)) {
        for (const cJSON *p = imgs->child; p && !st; p = p->next)
            st = cJSON_IsString(p) ? add_image_path(s, root, p->valuestring, where, err)
                                   : vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"images\" must hold path strings", where);
    } else if (!st && cJSON_IsString(img)) st = add_image_path(s, root, img->valuestring, where, err);
    else if (!st && (imgs || img)) st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: \"images\"/\"image\" must be paths", where);
    if (!st) {
        int parts = count_images(s->messages);
        /* LLaVA rows with an image but no marker get it in front of the first user turn. */
        if (cJSON_IsArray(convs) && parts == 0 && s->n_images == 1) {
            for (cJSON *m = s->messages->child; m; m = m->next)
                if (!strcmp(json_string(m, "role", ""), "user")) {
                    cJSON_InsertItemInArray(cJSON_GetObjectItemCaseSensitive(m, "content"), 0, image_part());
                    break;
                }
            parts = 1;
        }
        if (parts != s->n_images)
            st = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: %d image placeholders but %d image paths", where, parts, s->n_images);
    }
    if (st) conv_sample_free(s);
    return st;
}

void conv_dataset_free(conv_dataset *d) {
    for (size_t i = 0; i < d->n; i++) conv_sample_free(&d->samples[i]);
    free(d->samples);
    free(d->path);
    memset(d, 0, sizeof *d);
}

static vlmc_status push(conv_dataset *d, size_t *cap, const cJSON *row, const char *root, int line, vlmc_error *err) {
    if (d->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        conv_sample *ns = realloc(d->samples, nc * sizeof *ns);
        if (!ns) return vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        d->samples = ns;
        *cap = nc;
    }
    char where[600];
    snprintf(where, sizeof where, "%s:%d", d->path, line);
    vlmc_status s = conv_sample_from_json(row, root, where, &d->samples[d->n], err);
    if (s) return s;
    d->samples[d->n].source_line = line;
    d->n++;
    return VLMC_OK;
}

vlmc_status conv_dataset_load(const char *path, const char *image_root, conv_dataset *d, vlmc_error *err) {
    memset(d, 0, sizeof *d);
    char *text = NULL;
    size_t len = 0, cap = 0;
    vlmc_status s = file_read_all(path, (size_t)4 << 30, &text, &len, err);
    if (s) return s;
    d->path = strdup(path);
    char *root = image_root ? strdup(image_root) : path_dirname(path);
    if (!d->path || !root) {
        s = vlmc_fail(err, VLMC_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) i++;
    if (i < len && text[i] == '[') { /* a JSON array of rows */
        cJSON *arr = NULL;
        s = json_parse(text, len, path, &arr, err);
        int k = 0;
        for (const cJSON *row = arr ? arr->child : NULL; !s && row; row = row->next) s = push(d, &cap, row, root, k++, err);
        cJSON_Delete(arr);
    } else { /* JSONL */
        int line = 1;
        for (size_t b = 0; !s && b < len; line++) {
            size_t e = b;
            while (e < len && text[e] != '\n') e++;
            size_t k = b;
            while (k < e && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
            if (k < e) {
                char what[600];
                snprintf(what, sizeof what, "%s:%d", path, line);
                cJSON *row = NULL;
                s = json_parse(text + b, e - b, what, &row, err);
                if (!s) s = push(d, &cap, row, root, line, err);
                cJSON_Delete(row);
            }
            b = e + 1;
        }
    }
    if (!s && d->n == 0) s = vlmc_fail(err, VLMC_ERR_FORMAT, "%s: no rows", path);
out:
    free(root);
    free(text);
    if (s) conv_dataset_free(d);
    return s;
}
