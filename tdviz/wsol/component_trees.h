/* Component trees of an 8-bit image by flooding, for thresholds.c (included there, not compiled alone).
 *
 * min_tree: the min-tree of an image (components of {v <= t}, 4- or 8-connected), each node with its
 * box, first pixel, border contact and a count, built by flooding from one pixel with a 256-level
 * boundary heap and a stack of open components (Nister & Stewenius, ECCV 2008); fill_holes: the
 * lowest level at which each pixel joins the background that reaches the border.
 */

#ifndef TDVIZ_COMPONENT_TREES_H
#define TDVIZ_COMPONENT_TREES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* an open component while flooding, and a finished tree node */
typedef struct {
    int32_t x0, y0, x1, y1, first;
    int32_t level;
    int64_t count;
    uint8_t border;
} Comp;

typedef struct {
    int32_t x0, y0, x1, y1, first;
    int32_t level, parent_level; /* the component of {v <= t} for level <= t < parent_level */
    int64_t count;
    uint8_t border;
} Node;

static const int DX4[4] = {1, 0, -1, 0};
static const int DY4[4] = {0, 1, 0, -1};

static inline void comp_init(Comp *c, int level) {
    c->x0 = c->y0 = 1 << 30;
    c->x1 = c->y1 = -1;
    c->first = 1 << 30;
    c->level = level;
    c->count = 0;
    c->border = 0;
}

static inline void comp_merge(Comp *a, const Comp *b, int lowest) {
    if (b->x0 < a->x0) a->x0 = b->x0;
    if (b->y0 < a->y0) a->y0 = b->y0;
    if (b->x1 > a->x1) a->x1 = b->x1;
    if (b->y1 > a->y1) a->y1 = b->y1;
    if (b->first < a->first) a->first = b->first;
    a->border |= b->border;
    if (lowest) {
        if (b->count < a->count) a->count = b->count;
    } else {
        a->count += b->count;
    }
}

static inline void emit(Node *out, int *n_out, const Comp *c, int parent_level, int unused) {
    (void)unused;
    Node *o = &out[(*n_out)++];
    o->x0 = c->x0; o->y0 = c->y0; o->x1 = c->x1; o->y1 = c->y1; o->first = c->first;
    o->level = c->level;
    o->parent_level = parent_level;
    o->count = c->count;
    o->border = c->border;
}

typedef struct {
    int H, W, WP;          /* image size, padded row length */
    int32_t *next;         /* boundary heap: one linked stack per level (padded indices) */
    uint8_t *edge;         /* next neighbour to look at, per padded pixel */
    uint8_t *seen;         /* padded; the one-pixel frame is always seen */
    uint8_t *vp;           /* the image being flooded, padded */
    int16_t *xs, *ys;      /* image coordinates of a padded index */
    Comp *stack;           /* 257 open components at most (one per level + a sentinel) */
} Flood;

static int flood_alloc(Flood *f, int H, int W) {
    const int np = (H + 2) * (W + 2);
    f->H = H;
    f->W = W;
    f->WP = W + 2;
    f->next = malloc(sizeof(int32_t) * np);
    f->edge = malloc((size_t)np);
    f->seen = malloc((size_t)np);
    f->vp = calloc((size_t)np, 1);
    f->xs = malloc(sizeof(int16_t) * np);
    f->ys = malloc(sizeof(int16_t) * np);
    f->stack = malloc(sizeof(Comp) * 258);
    if (!f->next || !f->edge || !f->seen || !f->vp || !f->xs || !f->ys || !f->stack) return 0;
    for (int y = 0; y < H + 2; y++)
        for (int x = 0; x < W + 2; x++) {
            f->xs[y * (W + 2) + x] = (int16_t)(x - 1);
            f->ys[y * (W + 2) + x] = (int16_t)(y - 1);
        }
    return 1;
}

static void flood_free(Flood *f) {
    free(f->next); free(f->edge); free(f->seen); free(f->vp); free(f->xs); free(f->ys); free(f->stack);
}

/* Copy v into the padded image and mark the one-pixel frame seen, and (with a domain) every pixel
 * outside the domain; the other pixels start unseen. */
static void flood_load(Flood *f, const uint8_t *v, const uint8_t *domain) {
    const int H = f->H, W = f->W, WP = f->WP;
    memset(f->seen, 1, (size_t)WP);
    memset(f->seen + (size_t)(H + 1) * WP, 1, (size_t)WP);
    for (int y = 0; y < H; y++) {
        uint8_t *row = f->seen + (size_t)(y + 1) * WP;
        row[0] = row[W + 1] = 1;
        if (domain) {
            for (int x = 0; x < W; x++) row[x + 1] = !domain[y * W + x];
        } else {
            memset(row + 1, 0, (size_t)W);
        }
        memcpy(f->vp + (size_t)(y + 1) * WP + 1, v + (size_t)y * W, (size_t)W);
    }
}

/* The min-tree of v (components of {v <= t}, 4- or 8-connected) as a list of nodes; own[p] (or
 * nothing) is summed into each node's count. With a domain, only the pixels where domain[p] is
 * set take part (a forest: one tree per connected part) and each node's count is the lowest
 * extra[p] of its pixels instead. Returns the number of nodes. */
static int min_tree(const uint8_t *v, const int32_t *own, int conn8, Flood *f, Node *out, const uint8_t *domain,
                    const uint8_t *extra) {
    const int H = f->H, W = f->W, WP = f->WP, nn = conn8 ? 8 : 4;
    const int off8[8] = {1, WP + 1, WP, WP - 1, -1, -WP - 1, -WP, -WP + 1};
    const int off4[4] = {1, WP, -1, -WP};
    const int *off = conn8 ? off8 : off4;
    uint8_t *seen = f->seen, *edge = f->edge, *vp = f->vp;
    const int16_t *xs = f->xs, *ys = f->ys;
    int32_t *next = f->next;
    int32_t head[256];
    for (int k = 0; k < 256; k++) head[k] = -1;
    flood_load(f, v, domain);
    memset(edge, 0, (size_t)(H + 2) * WP);
    int n_out = 0, top = 1, low = 256;
    Comp *stack = f->stack;
    int32_t cur = -1, seed = WP; /* seeds: the unseen pixels in raster order */
next_tree:
    while (++seed < (H + 1) * WP && seen[seed]) {}
    if (seed >= (H + 1) * WP) return n_out;
    cur = seed;
    top = 1;
    low = 256;
    comp_init(&stack[0], 256); /* sentinel */
    comp_init(&stack[1], vp[cur]);
    if (extra) stack[0].count = stack[1].count = 1 << 30;
    seen[cur] = 1;
    for (;;) {
        const int lv = vp[cur];
        int moved = 0;
        for (int e = edge[cur]; e < nn; e++) {
            const int32_t q = cur + off[e];
            if (seen[q]) continue;
            seen[q] = 1;
            const int lq = vp[q];
            if (lq < lv) { /* go down first: cur waits in the heap, q opens a component */
                edge[cur] = (uint8_t)(e + 1);
                next[cur] = head[lv];
                head[lv] = cur;
                if (lv < low) low = lv;
                cur = q;
                comp_init(&stack[++top], lq);
                if (extra) stack[top].count = 1 << 30;
                moved = 1;
                break;
            }
            next[q] = head[lq];
            head[lq] = q;
            if (lq < low) low = lq;
        }
        if (moved) continue;
        Comp *c = &stack[top];
        const int x = xs[cur], y = ys[cur], p = y * W + x;
        if (x < c->x0) c->x0 = x;
        if (x > c->x1) c->x1 = x;
        if (y < c->y0) c->y0 = y;
        if (y > c->y1) c->y1 = y;
        if (p < c->first) c->first = p;
        c->border |= (x == 0 || y == 0 || x == W - 1 || y == H - 1);
        if (extra) {
            if (extra[p] < c->count) c->count = extra[p];
        } else if (own) {
            c->count += own[p];
        }
        while (low < 256 && head[low] < 0) low++;
        if (low >= 256) { /* every pixel of this part is in: close the open components */
            while (top > 1) {
                emit(out, &n_out, &stack[top], stack[top - 1].level, extra != NULL);
                comp_merge(&stack[top - 1], &stack[top], extra != NULL);
                top--;
            }
            emit(out, &n_out, &stack[1], 256, extra != NULL);
            goto next_tree;
        }
        cur = head[low];
        head[low] = next[cur];
        const int nl = vp[cur];
        while (nl > stack[top].level) { /* components below nl are finished */
            Comp done = stack[top--];
            if (nl < stack[top].level) { /* the next one starts above nl: open one at nl */
                emit(out, &n_out, &done, nl, extra != NULL);
                comp_init(&stack[++top], nl);
                if (extra) stack[top].count = 1 << 30;
                comp_merge(&stack[top], &done, extra != NULL);
                break;
            }
            emit(out, &n_out, &done, stack[top].level, extra != NULL);
            comp_merge(&stack[top], &done, extra != NULL);
        }
    }
}

/* s: the lowest level at which each pixel is 4-connected to the border through pixels <= it
 * (a priority flood from the border; within a level any order will do, so each level is a stack).
 * Uses the flood's padded buffers; s is unpadded. Returns whether s differs from q anywhere. */
static int fill_holes(const uint8_t *q, Flood *f, uint8_t *s) {
    const int H = f->H, W = f->W, WP = f->WP;
    const int off4[4] = {1, WP, -1, -WP};
    uint8_t *seen = f->seen, *vp = f->vp;
    int32_t *next = f->next;
    int32_t head[256];
    int changed = 0;
    for (int k = 0; k < 256; k++) head[k] = -1;
    flood_load(f, q, NULL);
#define PUSH(P, L) do { next[P] = head[L]; head[L] = (P); } while (0)
    for (int y = 0; y < H; y++) {
        const int step = (y == 0 || y == H - 1) ? 1 : W - 1;
        for (int x = 0; x < W; x += step) {
            const int32_t p = (y + 1) * WP + x + 1;
            seen[p] = 1;
            PUSH(p, vp[p]);
        }
    }
    for (int level = 0; level < 256; level++) {
        while (head[level] >= 0) {
            const int32_t p = head[level];
            head[level] = next[p];
            s[(p / WP - 1) * W + (p % WP - 1)] = (uint8_t)level;
            for (int j = 0; j < 4; j++) {
                const int32_t r = p + off4[j];
                if (seen[r]) continue;
                seen[r] = 1;
                if (vp[r] > level) {
                    PUSH(r, vp[r]);
                } else {
                    changed |= vp[r] < level;
                    PUSH(r, level);
                }
            }
        }
    }
#undef PUSH
    return changed;
}

#endif
