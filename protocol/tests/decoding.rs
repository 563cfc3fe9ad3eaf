//! Decoding never panics: whatever bytes arrive (a `settle` argument, an API key's body),
//! borsh decoding of settle items and authorizations either fails with an error or yields
//! a value whose shape checks and signature checks also return instead of panicking.

use market_protocol::{vectors, NativeCrypto, SettleItem, SignedAuthorization};
use proptest::prelude::*;

fn exercise_item(item: &SettleItem) {
    let _ = item.receipt.receipt.validate();
    let _ = item.receipt.verify(&NativeCrypto);
    if let Some(auth) = &item.authorization {
        exercise_authorization(auth);
    }
}

fn exercise_authorization(auth: &SignedAuthorization) {
    let _ = auth.authorization.validate();
    let _ = auth.authorization.message();
    let _ = auth.verify(&NativeCrypto);
}

/// A valid batch's bytes, to mutate: random bytes alone rarely get past the first field.
fn sample_batch() -> Vec<u8> {
    let auth = vectors::sample_authorization();
    let item = SettleItem {
        receipt: vectors::sample_receipt(&auth),
        authorization: Some(auth),
    };
    borsh::to_vec(&vec![item]).expect("borsh")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(items) = borsh::from_slice::<Vec<SettleItem>>(&bytes) {
            items.iter().for_each(exercise_item);
        }
        if let Ok(auth) = borsh::from_slice::<SignedAuthorization>(&bytes) {
            exercise_authorization(&auth);
        }
    }

    #[test]
    fn mutated_batches_decode_or_fail_cleanly(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_batch();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let keep = cut.index(bytes.len() + 1);
        for slice in [&bytes[..], &bytes[..keep]] {
            if let Ok(items) = borsh::from_slice::<Vec<SettleItem>>(slice) {
                items.iter().for_each(exercise_item);
            }
        }
    }
}
