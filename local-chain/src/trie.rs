//! How many trie nodes a storage access touches, for nearcore's `touching_trie_node` fee.
//!
//! A real node walks the shard's Merkle-Patricia trie from the root to the key: the
//! account's subtree sits below branch nodes shared with every other account of the shard,
//! and inside it the path length grows with the number of keys. Flat storage and the chunk
//! cache change what is read from disk, but not what is charged. This chain keeps no trie,
//! so it charges a stated estimate that is never lower than a real trie over its own keys:
//! a root-to-account prefix of [`ACCOUNT_PREFIX_NODES`] nodes, then one branch node per hex
//! digit of the key count (a 16-way trie over n random keys is ⌈log16 n⌉ deep) doubled for
//! extension nodes, then the leaf. The README says how this may differ from a real node.

/// Nodes from the shard root to an account's subtree. Mainnet shards hold tens of
/// millions of accounts: about log16(5·10^7) ≈ 6.4 branch levels, plus extensions.
pub const ACCOUNT_PREFIX_NODES: u64 = 8;

/// Nodes touched reading or writing one key among `keys` keys of an account.
pub fn nodes_touched(keys: usize) -> u64 {
    let mut levels = 0u64;
    let mut n = keys.max(1) as u64;
    while n > 1 {
        n = n.div_ceil(16);
        levels += 1;
    }
    ACCOUNT_PREFIX_NODES + 2 * levels + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_the_log_of_the_key_count() {
        assert_eq!(nodes_touched(0), 9);
        assert_eq!(nodes_touched(16), 11);
        assert_eq!(nodes_touched(17), 13);
        assert_eq!(nodes_touched(1_000_000), 8 + 2 * 5 + 1);
    }
}
