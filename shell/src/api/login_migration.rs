//! Accounts made before merge logins used OPAQUE have only an argon2 verifier, which cannot be
//! turned into an OPAQUE record without the password. At such an account's next successful
//! login the server holds the password for a moment, registers it, and stores the record, so
//! the account can prove itself in a merge from then on.

use super::AppState;
use hive_core::node::Command;
use hive_core::resources::{Key, Value};

/// Registers `password` for `name` in the background, unless its record changed meanwhile.
pub fn register_in_background(state: &AppState, name: String, password: String) {
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(Some(login)) = state.passwords.login_record(&name, &password).await else {
            return;
        };
        let lookup = name.clone();
        let current = state.handle.read(move |n| n.user(&lookup).map(|(id, u)| (id, u.clone())));
        let Ok(Some((id, mut record))) = current.await else { return };
        if record.login.is_some() {
            return;
        }
        // The password was checked against this verifier; only attach to the same account.
        if !state.passwords.verify(&password, Some(&record.password)).await.unwrap_or(false) {
            return;
        }
        record.login = Some(login);
        let put = Command::Put { key: Key::User(id), value: Value::User(record) };
        match state.handle.command(put).await {
            Ok(_) => tracing::info!(user = ?name, "account can now log in to merges (OPAQUE)"),
            Err(e) => tracing::warn!(user = ?name, error = %e, "could not store the merge login"),
        }
    });
}
