// Rotary embeddings in place, cos/sin from a table the CPU computed once (so both backends
// use the same angles). Row m is at its own position rows[m].pos, so rows of different
// sequences rotate independently. flags: 1 interleaved pairs (2i, 2i+1) as GGUF's llama
// weights expect, else half-split pairs (i, i + d/2) as Hugging Face's; 2 row m is stored at
// rows[m].kv_row (the KV cache) instead of row m.
struct Params { heads: u32, head_dim: u32, flags: u32, row_stride: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }
struct Row { pos: u32, kv_row: u32, kv_start: u32, kv_len: u32 }

@group(0) @binding(0) var<storage, read_write> t: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(4) var<storage, read> rows: array<Row>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let m = gid.y;
    if (gid.x >= p.heads * half || m >= step.m) {
        return;
    }
    let h = gid.x / half;
    let i = gid.x % half;
    let pos = rows[m].pos;
    let row = select(m, rows[m].kv_row, (p.flags & 2u) != 0u);
    let base = row * p.row_stride + h * p.head_dim;
    var a = base + i;
    var b = base + i + half;
    if ((p.flags & 1u) != 0u) {
        a = base + 2u * i;
        b = a + 1u;
    }
    let c = cs[(pos * half + i) * 2u];
    let s = cs[(pos * half + i) * 2u + 1u];
    let x0 = t[a];
    let x1 = t[b];
    t[a] = x0 * c - x1 * s;
    t[b] = x0 * s + x1 * c;
}
