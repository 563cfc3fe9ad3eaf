//! Progress bars on stderr while hashing and loading weights (hidden when stderr is not a
//! terminal, so logs and tests stay clean).

use indicatif::{ProgressBar, ProgressStyle};

pub fn bytes(message: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

pub fn items(message: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

/// A bytes bar and the `(done, total)` callback that moves it, as
/// `market_protocol::weights::weights_sha256` reports its progress.
pub fn bytes_callback(message: &str) -> (ProgressBar, impl FnMut(u64, u64) + Send + 'static) {
    let bar = bytes(message, 0);
    let moved = bar.clone();
    (bar, move |done, total| {
        moved.set_length(total);
        moved.set_position(done);
    })
}
