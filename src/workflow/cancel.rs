//! Cancellation of a running step.

/// Completes when a step's cancel channel turns true; never if there is no channel or its sender
/// is dropped. Every step kind races its work against it.
pub(super) async fn until_cancelled(cancel: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    if let Some(rx) = cancel {
        if rx.wait_for(|&cancelled| cancelled).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}
