/* wsolevaluation's boxes at every threshold of a quantized score map, from component trees.
 *
 * For a uint8 map q and a cut c, wsolevaluation's mask is {q > c} and its boxes are those of every
 * contour cv2.findContours(RETR_TREE) finds: the box of each 8-connected foreground component and,
 * for each hole (a 4-connected background component that does not reach the image border), the
 * hole's extent grown by one pixel on every side. MaxBoxAcc (v1) keeps the contour of largest
 * cv2.contourArea; that is always the outer contour of a component that lies in no hole (a hole's
 * or an island's polygon lies inside its component's), among those the first in OpenCV's list
 * (whose top-level contours come in descending raster order of their first pixel), and its area is
 * (W4 + W3 / 2) of the component with its holes filled, W4 and W3 counting the 2x2 pixel windows
 * with 4 and 3 of their pixels in it.
 *
 * Components at successive cuts nest, so three trees built once per map give every cut's boxes:
 * the max-tree of q (8-connected foreground components), the min-tree of q (4-connected background
 * components; those without a border pixel are the holes) and the max-tree of s, the map with its
 * holes filled (s = the lowest level at which a pixel joins the background that reaches the
 * border), whose components are the top-level components with their holes filled. Each tree is
 * built by flooding from one pixel with a 256-level boundary heap and a stack of open components
 * (Nister & Stewenius, "Linear time maximally stable extremal regions", ECCV 2008), which carries
 * each component's box, first pixel, border contact and window count as it grows.
 *
 * IoUs use the inclusive "+1" formula in double precision with the operations of numpy's
 * tdviz.wsol.boxes.box_iou, so the results are bit-identical to it (compile without
 * floating-point contraction).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "component_trees.h"

static double iou_max(double x0, double y0, double x1, double y1, const double *gt, int n_gt) {
    double best = 0.0;
    const double area_a = (x1 - x0 + 1) * (y1 - y0 + 1);
    for (int g = 0; g < n_gt; g++) {
        const double *b = gt + 4 * g;
        const double ix0 = x0 > b[0] ? x0 : b[0], iy0 = y0 > b[1] ? y0 : b[1];
        const double ix1 = x1 < b[2] ? x1 : b[2], iy1 = y1 < b[3] ? y1 : b[3];
        double w = ix1 - ix0 + 1, h = iy1 - iy0 + 1;
        w = w > 0.0 ? w : 0.0;
        h = h > 0.0 ? h : 0.0;
        const double inter = w * h;
        const double area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
        const double uni = area_a + area_b - inter;
        const double iou = uni > 0 ? inter / uni : 0.0;
        if (iou > best) best = iou;
    }
    return best;
}

typedef struct {
    int H, W, n_cuts;
    Flood flood;
    Node *nodes;
    uint8_t *seen;
    int32_t *next;
    uint8_t *inv, *s, *rq;
    int32_t *own;
    int32_t *best_first, *best_node;
    int64_t *best_area;
} Workspace;

void tdviz_wsol_workspace_free(void *ptr) {
    Workspace *w = ptr;
    if (!w) return;
    flood_free(&w->flood);
    free(w->nodes); free(w->seen); free(w->next); free(w->inv); free(w->s); free(w->rq); free(w->own);
    free(w->best_first); free(w->best_node); free(w->best_area);
    free(w);
}

/* Buffers for maps of H x W pixels and n_cuts cuts, reused across calls (one per thread). */
void *tdviz_wsol_workspace(int H, int W, int n_cuts) {
    const int n = H * W;
    if (H <= 0 || W <= 0 || n_cuts <= 0) return NULL;
    Workspace *w = calloc(1, sizeof(Workspace));
    if (!w) return NULL;
    w->H = H;
    w->W = W;
    w->n_cuts = n_cuts;
    const int ok = flood_alloc(&w->flood, H, W);
    w->seen = malloc((size_t)n);
    w->next = malloc(sizeof(int32_t) * n);
    w->nodes = malloc(sizeof(Node) * n);
    w->inv = malloc((size_t)n);
    w->s = malloc((size_t)n);
    w->rq = malloc((size_t)n);
    w->own = malloc(sizeof(int32_t) * n);
    w->best_first = malloc(sizeof(int32_t) * n_cuts);
    w->best_node = malloc(sizeof(int32_t) * n_cuts);
    w->best_area = malloc(sizeof(int64_t) * n_cuts);
    if (!ok || !w->seen || !w->next || !w->nodes || !w->inv || !w->s || !w->rq || !w->own || !w->best_first || !w->best_node ||
        !w->best_area) {
        tdviz_wsol_workspace_free(w);
        return NULL;
    }
    return w;
}

static inline double right_edge(int x1, int grow, int size, int inclusive) {
    /* boundingRect's x + w is x1 + 1 (+ grow); wsolevaluation clips it to size - 1 */
    if (inclusive) return x1 + grow;
    return x1 + grow + 1 < size - 1 ? x1 + grow + 1 : size - 1;
}

/* For n_maps maps q [n_maps, H, W] with cuts [n_maps, n_cuts] (ascending; mask q > cut) and GT
 * boxes gt[gt_start[m] .. gt_start[m + 1]) (inclusive [x0, y0, x1, y1] in the map frame): v1 and v2
 * [n_maps, n_cuts], the best IoU of MaxBoxAcc's largest contour and of MaxBoxAccV2's contours.
 * inclusive = 0: wsolevaluation's boxes (x1 = min(x + w, W - 1)); 1: x1 = x + w - 1.
 * ws: a workspace for H x W maps and n_cuts cuts. Returns 0, or -1 for another workspace size. */
int tdviz_wsol_best_ious(void *ws, const uint8_t *maps, int n_maps, int H, int W, const int32_t *cuts,
                         int n_cuts, const double *gt, const int64_t *gt_start, int inclusive, double *v1,
                         double *v2) {
    Workspace *w = ws;
    const int n = H * W;
    if (!w || H != w->H || W != w->W || n_cuts > w->n_cuts) return -1;
    int first_ge[257];
    for (int m = 0; m < n_maps; m++) {
        const uint8_t *q0 = maps + (size_t)m * n;
        const int32_t *cut = cuts + (size_t)m * n_cuts;
        const double *g = gt + 4 * gt_start[m];
        const int n_gt = (int)(gt_start[m + 1] - gt_start[m]);
        double *o1 = v1 + (size_t)m * n_cuts, *o2 = v2 + (size_t)m * n_cuts;
        /* Only the cuts matter: level v becomes r = the number of distinct cuts below v, so that
         * q > cut_j exactly when r > j' (j' = cut_j's rank among the distinct cuts), and the trees
         * have at most n_cuts + 1 levels. first_ge[L]: the first cut of rank >= L. */
        uint8_t lut[256];
        {
            int rank = 0, i = 0;
            for (int v = 0; v < 256; v++) {
                while (i < n_cuts && cut[i] < v) { /* cut[i] < v: v is above this cut */
                    if (i == 0 || cut[i] != cut[i - 1]) rank++;
                    i++;
                }
                lut[v] = (uint8_t)rank;
            }
            int level = 0;
            for (int c = 0; c < n_cuts; c++) {
                const int r = c == 0 ? 0 : level + (cut[c] != cut[c - 1]);
                while (level < r) first_ge[++level] = c;
                if (c == 0) first_ge[0] = 0;
                level = r;
            }
            for (int L = level + 1; L <= 256; L++) first_ge[L] = n_cuts;
        }
        /* no contour (empty mask): wsolevaluation's placeholder box [0, 0, 0, 0] */
        const double none = iou_max(0, 0, 0, 0, g, n_gt);
        for (int i = 0; i < n_cuts; i++) {
            o1[i] = none;
            o2[i] = -1.0;
            w->best_area[i] = -1;
            w->best_first[i] = -1;
            w->best_node[i] = -1;
        }
        /* in rank space (the lut is monotone, so it commutes with the filling's min and max) */
        uint8_t *s = w->s, *q = w->rq;
        for (int p = 0; p < n; p++) q[p] = lut[q0[p]];
        /* s fills the holes; without a hole (s == q) the filled components are the components */
        const int holes = fill_holes(q, &w->flood, s);
        /* window counts of the filled map: the two lowest pixels of each 2x2 window count one each
         * (which of two equal pixels counts does not matter: they are in a component together) */
        memset(w->own, 0, sizeof(int32_t) * n);
        for (int y = 0; y + 1 < H; y++) {
            const uint8_t *r0 = s + (size_t)y * W, *r1 = r0 + W;
            int32_t *o0 = w->own + (size_t)y * W, *o1 = o0 + W;
            for (int x = 0; x + 1 < W; x++) {
                /* the lower and higher of each row pair, then the two lowest of the four */
                int32_t *la, *ha, *lb, *hb;
                int va, wa, vb, wb;
                if (r0[x + 1] < r0[x]) { la = o0 + x + 1; va = r0[x + 1]; ha = o0 + x; wa = r0[x]; }
                else { la = o0 + x; va = r0[x]; ha = o0 + x + 1; wa = r0[x + 1]; }
                if (r1[x + 1] < r1[x]) { lb = o1 + x + 1; vb = r1[x + 1]; hb = o1 + x; wb = r1[x]; }
                else { lb = o1 + x; vb = r1[x]; hb = o1 + x + 1; wb = r1[x + 1]; }
                if (va <= vb) {
                    *la += 1;
                    if (wa <= vb) *ha += 1; else *lb += 1;
                } else {
                    *lb += 1;
                    if (wb < va) *hb += 1; else *la += 1;
                }
            }
        }
        /* foreground components {q > c}: the min-tree of 255 - q; a node of level L' and parent
         * level P' is the component for the cuts 255 - P' <= c < 255 - L' */
        for (int p = 0; p < n; p++) w->inv[p] = (uint8_t)(255 - q[p]);
        int k = min_tree(w->inv, holes ? NULL : w->own, 1, &w->flood, w->nodes, NULL, NULL);
        for (int i = 0; i < k; i++) {
            const Node *a = &w->nodes[i];
            const int from = 255 - a->parent_level, to = 255 - a->level;
            const int lo = first_ge[from < 0 ? 0 : from], hi = first_ge[to];
            if (lo >= hi) continue;
            const double iou = iou_max(a->x0, a->y0, right_edge(a->x1, 0, W, inclusive),
                                       right_edge(a->y1, 0, H, inclusive), g, n_gt);
            for (int c = lo; c < hi; c++) if (iou > o2[c]) o2[c] = iou;
        }
        if (holes) {
            /* the holes: background components {q <= c} that do not reach the border. A pixel is in
             * one at cut c when q <= c < s, so they are the components of {q <= c} within
             * {q < s} (4-connected) for the cuts below the lowest s of their pixels */
            for (int p = 0; p < n; p++) w->seen[p] = s[p] > q[p];  /* the same pixels as for q0 */
            k = min_tree(q, NULL, 0, &w->flood, w->nodes, w->seen, s);
            for (int i = 0; i < k; i++) {
                const Node *a = &w->nodes[i];
                const int until = a->parent_level < a->count ? a->parent_level : (int)a->count;
                const int lo = first_ge[a->level], hi = first_ge[until];
                if (lo >= hi) continue;
                const double iou = iou_max(a->x0 - 1, a->y0 - 1, right_edge(a->x1, 1, W, inclusive),
                                           right_edge(a->y1, 1, H, inclusive), g, n_gt);
                for (int c = lo; c < hi; c++) if (iou > o2[c]) o2[c] = iou;
            }
            /* and the filled components, for v1 */
            for (int p = 0; p < n; p++) w->inv[p] = (uint8_t)(255 - s[p]);
            k = min_tree(w->inv, w->own, 1, &w->flood, w->nodes, NULL, NULL);
        }
        /* v1: the filled top-level component of largest window area (ties: the last first pixel) */
        for (int i = 0; i < k; i++) {
            const Node *a = &w->nodes[i];
            const int from = 255 - a->parent_level, to = 255 - a->level;
            const int lo = first_ge[from < 0 ? 0 : from], hi = first_ge[to];
            for (int c = lo; c < hi; c++) {
                if (a->count > w->best_area[c] || (a->count == w->best_area[c] && a->first > w->best_first[c])) {
                    w->best_area[c] = a->count;
                    w->best_first[c] = a->first;
                    w->best_node[c] = i;
                }
            }
        }
        for (int c = 0; c < n_cuts; c++) {
            if (w->best_node[c] < 0) { /* nothing above the cut */
                o2[c] = none;
                continue;
            }
            const Node *a = &w->nodes[w->best_node[c]];
            o1[c] = iou_max(a->x0, a->y0, right_edge(a->x1, 0, W, inclusive), right_edge(a->y1, 0, H, inclusive),
                            g, n_gt);
        }
    }
    return 0;
}
