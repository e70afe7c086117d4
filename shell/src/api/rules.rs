//! What the API accepts as user names, camera names and passwords; `hive serve --init-owner`
//! applies the same rules.

use super::ApiError;
use thiserror::Error;

/// Shortest password accepted.
pub const PASSWORD_LEN_MIN: usize = 8;
/// Longest user name, in bytes.
pub const USER_NAME_LEN_MAX: usize = 64;
/// Longest camera name, in bytes.
pub const CAMERA_NAME_LEN_MAX: usize = 200;

/// A name or password the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Invalid {
    /// A password shorter than [`PASSWORD_LEN_MIN`].
    #[error("password must be at least {PASSWORD_LEN_MIN} characters")]
    PasswordTooShort,
    /// A user name that is empty, too long or holds a `:` (which ends it in HTTP Basic).
    #[error("user name must be 1 to {USER_NAME_LEN_MAX} characters, without ':'")]
    UserName,
    /// A camera name that is blank or too long.
    #[error("name must be 1 to {CAMERA_NAME_LEN_MAX} characters")]
    CameraName,
    /// A control character (NUL, newline, escape...): it could forge log lines or break
    /// whatever displays the name.
    #[error("{what} must not contain control characters (found {found:?})")]
    ControlCharacter {
        /// Which field.
        what: &'static str,
        /// The first one found.
        found: char,
    },
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Refuses passwords shorter than [`PASSWORD_LEN_MIN`] characters.
pub fn check_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < PASSWORD_LEN_MIN {
        return Err(Invalid::PasswordTooShort);
    }
    Ok(())
}

/// The user name as stored (trimmed), or why it is refused.
pub fn user_name(name: &str) -> Result<String, Invalid> {
    no_control_characters("user name", name)?;
    let name = name.trim();
    if name.is_empty() || name.len() > USER_NAME_LEN_MAX || name.contains(':') {
        return Err(Invalid::UserName);
    }
    Ok(name.to_owned())
}

/// Refuses blank or overlong camera names and control characters.
pub fn check_camera_name(name: &str) -> Result<(), Invalid> {
    no_control_characters("name", name)?;
    if name.trim().is_empty() || name.len() > CAMERA_NAME_LEN_MAX {
        return Err(Invalid::CameraName);
    }
    Ok(())
}

/// Refuses any control character in `text`.
pub fn no_control_characters(what: &'static str, text: &str) -> Result<(), Invalid> {
    match text.chars().find(|c| c.is_control()) {
        Some(found) => Err(Invalid::ControlCharacter { what, found }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_nul_newline_or_escape_are_refused() {
        for name in ["a\0b", "eve\nINFO forged", "x\r", "\u{1b}[31mred", "tab\there"] {
            assert!(matches!(user_name(name), Err(Invalid::ControlCharacter { .. })), "{name:?}");
            assert!(check_camera_name(name).is_err(), "{name:?}");
        }
        assert_eq!(user_name("  carol "), Ok("carol".to_owned()));
        assert_eq!(check_camera_name("Entrée 1 – Nord"), Ok(()));
    }

    #[test]
    fn passwords_shorter_than_eight_characters_are_refused() {
        assert_eq!(check_password("x"), Err(Invalid::PasswordTooShort));
        assert_eq!(check_password("sieben7"), Err(Invalid::PasswordTooShort));
        assert_eq!(check_password("eight888"), Ok(()));
    }
}
