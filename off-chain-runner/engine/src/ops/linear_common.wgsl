// x · Wᵀ (+ bias), W of n rows by k columns in the format spliced in below; the epilogue
// spliced in after says where outputs go (linear_store.wgsl, linear_qkv.wgsl,
// linear_swiglu.wgsl). flags: 1 bias, 2 accumulate into y, 4 write row m at
// rows[m].kv_row (its sequence's slot and position in the KV cache) instead of row m.
// split: the QKV epilogue's query and key widths.
struct LinearParams { n: u32, k: u32, flags: u32, q_width: u32, kv_width: u32, pad0: u32, pad1: u32, pad2: u32 }
struct Step { m: u32, pad0: u32, pad1: u32, pad2: u32 }
struct Row { pos: u32, kv_row: u32, kv_start: u32, kv_len: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: LinearParams;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read> rows: array<Row>;
