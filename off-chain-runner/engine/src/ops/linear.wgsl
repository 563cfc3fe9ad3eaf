// The one linear kernel, for a decode step of one row as for a prefill chunk or a batch of
// many: every output y[m][n] is reduced in the same fixed order whatever the number of rows,
// the other rows beside it, or where its row falls in a tile. That order:
//   * a row of W is cut into units of 8 elements (unit_col says which, per format); a unit's
//     8 products are added left to right: ((w0·x0 + w1·x1) + w2·x2) + … + w7·x7 (dot8);
//   * 8 lanes share an output: lane l adds the sums of units l, l + 8, l + 16, ... in turn;
//   * the 8 lane sums are added by a fixed tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
// Nothing in it depends on m, on the tile or on scheduling, so a request's outputs are the
// same bits alone or batched, prefilled whole or in chunks (tests/batch_invariance.rs).
//
// A workgroup is 64 threads: 8 groups of 8 lanes. Group g computes weight rows
// n0 + g·RN .. n0 + g·RN + RN for activation rows m0 .. m0 + TM: each unit of W is
// dequantized once into registers and used for TM rows, so a step of up to TM rows reads
// every weight once, and a step of M rows ⌈M / TM⌉ times. linear.rs writes out the RN × TM
// accumulators (the lines marked GENERATED) as scalars: private arrays indexed by a loop
// counter end up in memory on some drivers (llvmpipe), at several times the cost. Every
// tile shape runs the same expressions per output, in the same order.
const RN: u32 = {RN}u;
const TM: u32 = {TM}u;

var<workgroup> partial: array<f32, {PARTIALS}>; // 64 threads × RN × TM

fn dot8(w: array<f32, 8>, v: array<f32, 8>) -> f32 {
    return ((((((w[0] * v[0] + w[1] * v[1]) + w[2] * v[2]) + w[3] * v[3]) + w[4] * v[4])
        + w[5] * v[5]) + w[6] * v[6]) + w[7] * v[7];
}

// The 8 elements of x's row at `base` that unit u of a weight row multiplies.
fn x_unit(base: u32, u: u32) -> array<f32, 8> {
    return array<f32, 8>(
        x[base + unit_col(u, 0u)], x[base + unit_col(u, 1u)],
        x[base + unit_col(u, 2u)], x[base + unit_col(u, 3u)],
        x[base + unit_col(u, 4u)], x[base + unit_col(u, 5u)],
        x[base + unit_col(u, 6u)], x[base + unit_col(u, 7u)],
    );
}

// Output (group g, weight row r of the group, activation row i): its 8 lane sums added by
// the fixed tree above.
fn lane_sum(g: u32, r: u32, i: u32) -> f32 {
    let b = (r * TM + i) * 64u + g * 8u;
    let even = (partial[b] + partial[b + 4u]) + (partial[b + 2u] + partial[b + 6u]);
    let odd = (partial[b + 1u] + partial[b + 5u]) + (partial[b + 3u] + partial[b + 7u]);
    return even + odd;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % 8u;
    let group = t / 8u;
    let n0 = (wid.x + wid.y * 32768u) * 8u * RN;
    let m0 = wid.z * TM;
    let rows = min(TM, step.m - m0);
    // Rows of W past its end are read clamped (never stored), so the loop has no branch.
    let first = n0 + group * RN;
    let last = p.n - 1u;
    // GENERATED: let n_r = min(first + r, last); var acc_r_i = 0.0;
{DECLARE}
    for (var u = lane; u < p.k / 8u; u += 8u) {
        // GENERATED: let w_r = w_unit(n_r, u);
{WEIGHTS}
        // GENERATED, per row i: if (i < rows) { let x_i = x_unit(row i, u); acc_r_i += dot8(w_r, x_i); }
{ROWS}
    }
    // GENERATED: partial[(r·TM + i)·64 + t] = acc_r_i;
{PARTIALS_STORE}
    workgroupBarrier();
    // GENERATED: the epilogue, storing each output from its 8 lane sums (lane_sum).
{FINISH}
}
