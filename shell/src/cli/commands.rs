//! The subcommands that talk to a running server.

use super::client::{Client, ClientError, Trust};
use super::table::{render, short};
use super::{CameraCmd, CliError, Cmd, Conn, LicenseCmd, OnOff, ServerCmd, UserCmd};
use serde_json::{json, Value};

fn client(conn: &Conn) -> Result<Client, ClientError> {
    let trust = match &conn.ca {
        Some(ca) => Trust::Ca(ca.clone()),
        None => Trust::Pin(conn.known_servers.clone()),
    };
    Client::new(&conn.url, &conn.user, &conn.password, &trust)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The system as text: what `hive status` and `hive demo` print.
pub fn system_text(system: &Value) -> String {
    let mut out =
        format!("System {:?} ({})\n\n", text(&system["name"]), short(&text(&system["id"])));
    out.push_str(&servers_text(&system["servers"]));
    out.push_str(&time_text(system));
    out.push_str(&format!(
        "\nLicenses: {} channels, {} cameras recording\n",
        system["licenses"]["total"], system["licenses"]["used"]
    ));
    if let Some(others) = system["other_systems"].as_array().filter(|o| !o.is_empty()) {
        out.push_str("\nOther systems on the network:\n");
        for o in others {
            let n = o["servers"].as_array().map_or(0, Vec::len);
            let (name, reason) = (text(&o["name"]), text(&o["reason"]));
            out.push_str(&format!("  {name:?}: {n} server(s), {reason}\n"));
        }
    }
    out
}

/// The servers as a table: status, failover settings and the cameras each records now.
fn servers_text(servers: &Value) -> String {
    let rows: Vec<Vec<String>> = servers
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let me = if s["is_self"].as_bool() == Some(true) { " *" } else { "" };
            let failover = if s["failover_enabled"].as_bool() == Some(true) { "on" } else { "off" };
            vec![
                format!("{}{me}", short(&text(&s["id"]))),
                text(&s["name"]),
                text(&s["status"]),
                format!("{}/{}", text(&s["cameras_recording"]), text(&s["max_cameras"])),
                failover.to_owned(),
                s["addresses"]
                    .as_array()
                    .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    render(&["SERVER", "NAME", "STATUS", "RECORDING", "FAILOVER", "ADDRESSES"], &rows)
}

/// The answering server's time against its wall clock, and the primary time server.
fn time_text(system: &Value) -> String {
    let me = system["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["is_self"].as_bool() == Some(true));
    let Some(me) = me else { return String::new() };
    let bound = match me["time_error_bound_us"].as_u64() {
        Some(us) => format!("error bound {us} µs"),
        None => "not synced yet".to_owned(),
    };
    format!(
        "\nTime: this server's system time is {:+} ms from its wall clock ({bound}); \
         primary time server {}\n",
        me["time_offset_ms"].as_i64().unwrap_or(0),
        short(&text(&system["time_primary"])),
    )
}

fn cameras_text(cams: &Value) -> String {
    let rows: Vec<Vec<String>> = cams
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                text(&c["id"]),
                text(&c["name"]),
                short(&text(&c["server"])),
                short(&text(&c["preferred_server"])),
                if c["recording"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                status_text(&c["status"]),
                text(&c["url"]),
                text(&c["rtsp_urls"][0]),
            ]
        })
        .collect();
    let header =
        ["CAMERA", "NAME", "RECORDED BY", "PREFERRED", "RECORDING", "STATUS", "URL", "PLAY"];
    render(&header, &rows)
}

/// A recording status as one word, with the reason of an error: "recording", "error: 401 from
/// camera". "-" when the answering server does not record the camera (it does not know).
fn status_text(status: &Value) -> String {
    match (status["state"].as_str(), status["reason"].as_str()) {
        (Some(state), Some(reason)) => format!("{state}: {reason}"),
        (Some(state), None) => state.to_owned(),
        _ => "-".to_owned(),
    }
}

pub async fn run(cmd: Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Status(conn) => {
            let system: Value = client(&conn)?.get("/api/system").await?;
            if conn.json {
                print_json(&system);
            } else {
                print!("{}", system_text(&system));
            }
        }
        Cmd::Join { target, remote_user, remote_password, keep, conn } => {
            let body = json!({ "url": target, "user": remote_user, "password": remote_password, "keep": keep });
            let answer: Value = client(&conn)?.post("/api/merge", &body).await?;
            if conn.json {
                print_json(&answer);
            } else {
                println!("Merged: the system is now {}", text(&answer["system"]));
            }
        }
        Cmd::Split { name, conn } => {
            let answer: Value = client(&conn)?.post("/api/split", &json!({ "name": name })).await?;
            if conn.json {
                print_json(&answer);
            } else {
                println!(
                    "Split off into new system {name:?} ({})",
                    short(&text(&answer["system"]))
                );
            }
        }
        Cmd::RenameSystem { name, conn } => {
            let answer: Value =
                client(&conn)?.post("/api/system/rename", &json!({ "name": name })).await?;
            if conn.json {
                print_json(&answer);
            } else {
                println!("The system is now named {name:?}");
            }
        }
        Cmd::ReplaceSecret { conn } => {
            let answer: Value = client(&conn)?.post("/api/system/secret", &json!({})).await?;
            if conn.json {
                print_json(&answer);
            } else {
                println!(
                    "The system secret is replaced. Its join token, shown this once (servers \
                     offline now must be restarted with it):\n\n    {}",
                    text(&answer["join_token"])
                );
            }
        }
        Cmd::ReplaceLinkKey { conn } => {
            let answer: Value = client(&conn)?.post("/api/link-key", &json!({})).await?;
            if conn.json {
                print_json(&answer);
            } else {
                println!("This server's link key is now {}", text(&answer["link_key"]));
            }
        }
        Cmd::License { cmd, conn } => match cmd {
            LicenseCmd::Add { key } => {
                let answer: Value =
                    client(&conn)?.post("/api/licenses", &json!({ "key": key })).await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    println!(
                        "Added license of {} channels bound to {}",
                        answer["channels"],
                        text(&answer["hardware_id"])
                    );
                }
            }
            LicenseCmd::List => {
                let answer: Value = client(&conn)?.get("/api/licenses").await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    let rows: Vec<Vec<String>> = answer["keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|k| {
                            vec![
                                short(&text(&k["id"])),
                                text(&k["channels"]),
                                text(&k["hardware_id"]),
                                if k["counted"].as_bool() == Some(true) {
                                    "yes".into()
                                } else {
                                    "no (server offline)".into()
                                },
                            ]
                        })
                        .collect();
                    print!("{}", render(&["KEY", "CHANNELS", "HARDWARE", "COUNTED"], &rows));
                    println!("Total: {} channels, {} used", answer["total"], answer["used"]);
                }
            }
        },
        Cmd::Camera { cmd, conn } => match cmd {
            CameraCmd::Add { name, stream, secondary_stream, server } => {
                let mut body = json!({ "name": name, "url": stream });
                if let Some(url) = secondary_stream {
                    body["secondary_url"] = json!(url);
                }
                if let Some(s) = server {
                    body["server"] = json!(s);
                }
                let answer: Value = client(&conn)?.post("/api/cameras", &body).await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    println!("Added camera {} ({})", text(&answer["id"]), text(&answer["name"]));
                }
            }
            CameraCmd::List => {
                let answer: Value = client(&conn)?.get("/api/cameras").await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    print!("{}", cameras_text(&answer));
                }
            }
            CameraCmd::Rm { id } => {
                client(&conn)?.delete(&format!("/api/cameras/{id}")).await?;
                if conn.json {
                    print_json(&json!({ "removed": id }));
                } else {
                    println!("Removed camera {id}");
                }
            }
        },
        Cmd::Server { cmd, conn } => match cmd {
            ServerCmd::List => {
                let answer: Value = client(&conn)?.get("/api/servers").await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    print!("{}", servers_text(&answer));
                }
            }
            ServerCmd::Set { id, failover, max_cameras, time_priority } => {
                let mut body = json!({});
                if let Some(f) = failover {
                    body["failover_enabled"] = json!(f == OnOff::On);
                }
                if let Some(m) = max_cameras {
                    body["max_cameras"] = json!(m);
                }
                if let Some(p) = time_priority {
                    body["time_priority"] = json!(p);
                }
                let answer: Value =
                    client(&conn)?.patch(&format!("/api/servers/{id}"), &body).await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    print!("{}", servers_text(&json!([answer])));
                }
            }
        },
        Cmd::User { cmd, conn } => match cmd {
            UserCmd::Add { name, role, new_password } => {
                let body = json!({ "name": name, "role": role, "password": new_password });
                let answer: Value = client(&conn)?.post("/api/users", &body).await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    println!("Added {} {}", text(&answer["role"]), text(&answer["name"]));
                }
            }
            UserCmd::List => {
                let answer: Value = client(&conn)?.get("/api/users").await?;
                if conn.json {
                    print_json(&answer);
                } else {
                    let rows: Vec<Vec<String>> = answer
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|u| vec![text(&u["name"]), text(&u["role"]), text(&u["id"])])
                        .collect();
                    print!("{}", render(&["USER", "ROLE", "ID"], &rows));
                }
            }
        },
        Cmd::Backup { out, conn } => {
            let bytes = client(&conn)?.get_bytes("/api/backup").await?;
            crate::server::backup::write_owner_only(&out, &bytes)
                .map_err(|source| CliError::Write { path: out.display().to_string(), source })?;
            if conn.json {
                print_json(&json!({ "file": out, "bytes": bytes.len() }));
            } else {
                println!("Wrote a backup of {} bytes to {}", bytes.len(), out.display());
            }
        }
        Cmd::Restore { file, data_dir } => {
            crate::server::backup::restore(&file, &data_dir).await?;
            println!(
                "Restored {} into {}; start `hive serve --data-dir {}` and it catches up from its peers",
                file.display(),
                data_dir.display(),
                data_dir.display()
            );
        }
        Cmd::Secret => {
            let token = hive_core::auth::Secret::from_bytes(rand::random()).token();
            println!("{token}");
        }
        Cmd::Serve(_) | Cmd::Demo(_) | Cmd::Testcamera(_) => unreachable!("handled by cli::main"),
    }
    Ok(())
}
