// Batch-1 decode where the adapter has subgroups of at least 8 lanes: as linear_vec.wgsl,
// but the 8 lanes of a row add their partial sums by shuffles instead of through workgroup
// memory and three barriers. The shuffles pair lanes 4, 2 and 1 apart, the very order of
// the plain kernel's tree, so both give bit-identical results (tests/kernels.rs checks it).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % 8u;
    let row = (wid.x + wid.y * 32768u) * 8u + t / 8u;
    var s = 0.0;
    if (row < p.n) {
        for (var u = lane; u < p.k / 8u; u += 8u) {
            s += w_dot8(row, u);
        }
    }
    s += subgroupShuffleXor(s, 4u);
    s += subgroupShuffleXor(s, 2u);
    s += subgroupShuffleXor(s, 1u);
    if (lane == 0u && row < p.n) {
        store(0u, row, s);
    }
}
