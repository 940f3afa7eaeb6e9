//! S3 settings shared by both server crates: [`S3Settings`] says where an S3-compatible bucket
//! is and how to sign for it (`filesync-s3-signer` presigns URLs to it, `filesync-r2` keeps its
//! bytes in it). Read them with [`S3Settings::from_env`], or (feature `cli`) from the
//! [`S3Args`] flags both binaries flatten. [`upload_headers`] builds the headers an upload is
//! sent with, for both servers.
//!
//! Every setting has one flag and one environment variable ([`S3Key`]); a bad one is refused
//! with a [`SettingError`] naming both.

use std::collections::BTreeMap;

use url::Url;

use super::{Secret, UploadSpec};
use crate::BoxError;
use crate::contract::{check_content_type, content_address};
use crate::types::ContentHash;

/// The region when none is given: `auto`, as Cloudflare R2 expects.
pub const DEFAULT_REGION: &str = "auto";

/// One S3 setting, with its flag and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum S3Key {
    /// `--s3-endpoint`, `S3_ENDPOINT`.
    Endpoint,
    /// `--s3-region`, `S3_REGION`.
    Region,
    /// `--s3-bucket`, `S3_BUCKET`.
    Bucket,
    /// `--s3-access-key-id`, `S3_ACCESS_KEY_ID`.
    AccessKeyId,
    /// `--s3-secret-access-key`, `S3_SECRET_ACCESS_KEY`.
    SecretAccessKey,
    /// `--s3-session-token`, `S3_SESSION_TOKEN`.
    SessionToken,
    /// `--s3-force-path-style`, `S3_FORCE_PATH_STYLE`.
    ForcePathStyle,
}

impl S3Key {
    /// Every setting.
    pub const ALL: [S3Key; 7] = [
        S3Key::Endpoint,
        S3Key::Region,
        S3Key::Bucket,
        S3Key::AccessKeyId,
        S3Key::SecretAccessKey,
        S3Key::SessionToken,
        S3Key::ForcePathStyle,
    ];

    /// The flag without its dashes, e.g. `s3-endpoint`.
    pub const fn long(self) -> &'static str {
        match self {
            S3Key::Endpoint => "s3-endpoint",
            S3Key::Region => "s3-region",
            S3Key::Bucket => "s3-bucket",
            S3Key::AccessKeyId => "s3-access-key-id",
            S3Key::SecretAccessKey => "s3-secret-access-key",
            S3Key::SessionToken => "s3-session-token",
            S3Key::ForcePathStyle => "s3-force-path-style",
        }
    }

    /// The environment variable, e.g. `S3_ENDPOINT`.
    pub const fn env(self) -> &'static str {
        match self {
            S3Key::Endpoint => "S3_ENDPOINT",
            S3Key::Region => "S3_REGION",
            S3Key::Bucket => "S3_BUCKET",
            S3Key::AccessKeyId => "S3_ACCESS_KEY_ID",
            S3Key::SecretAccessKey => "S3_SECRET_ACCESS_KEY",
            S3Key::SessionToken => "S3_SESSION_TOKEN",
            S3Key::ForcePathStyle => "S3_FORCE_PATH_STYLE",
        }
    }
}

/// A setting is missing or malformed. The message names its flag and environment variable,
/// e.g. `--s3-bucket (S3_BUCKET): "X" is not a valid bucket name`; the cause, if any, is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("--{long} ({env}): {reason}")]
pub struct SettingError {
    long: &'static str,
    env: &'static str,
    reason: String,
    #[source]
    source: Option<BoxError>,
}

impl SettingError {
    /// The setting `--<long>` (`env`) is refused because of `reason`.
    pub fn new(long: &'static str, env: &'static str, reason: impl Into<String>) -> Self {
        Self {
            long,
            env,
            reason: reason.into(),
            source: None,
        }
    }

    /// The same, for an S3 setting.
    pub fn s3(key: S3Key, reason: impl Into<String>) -> Self {
        Self::new(key.long(), key.env(), reason)
    }

    /// With the error that caused it.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The flag without its dashes, e.g. `s3-bucket`.
    pub fn long(&self) -> &'static str {
        self.long
    }

    /// The environment variable, e.g. `S3_BUCKET`.
    pub fn env(&self) -> &'static str {
        self.env
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Where an S3-compatible bucket (Cloudflare R2, AWS S3, MinIO, ...) is and how to sign for
/// it (S3-2). [`validate`](Self::validate) checks it without network access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `S3_ENDPOINT`, e.g. `https://<account>.r2.cloudflarestorage.com` or `http://127.0.0.1:9000`.
    pub endpoint: Url,
    /// `S3_REGION` ([`DEFAULT_REGION`] `auto` for R2; `us-east-1` for AWS's default region).
    pub region: String,
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `S3_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
    /// `S3_FORCE_PATH_STYLE`: path-style URLs (`<endpoint>/<bucket>/<key>`, e.g. for MinIO)
    /// instead of virtual-hosted ones (`<bucket>.<host>/<key>`).
    pub force_path_style: bool,
}

impl S3Settings {
    /// The settings from `S3_ENDPOINT`, `S3_REGION` (default `auto`), `S3_BUCKET`,
    /// `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, `S3_SESSION_TOKEN` (optional) and
    /// `S3_FORCE_PATH_STYLE` (optional: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`),
    /// validated.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(std::env::var)
    }

    /// [`from_env`](Self::from_env) with the variables from `var`.
    fn from_lookup(
        var: impl Fn(&'static str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, SettingError> {
        let get = |key: S3Key| match var(key.env()) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(SettingError::s3(key, "cannot read the variable").with_source(e)),
        };
        let required =
            |key: S3Key| get(key)?.ok_or_else(|| SettingError::s3(key, "required, not set"));
        let force_path_style = match get(S3Key::ForcePathStyle)? {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                SettingError::s3(S3Key::ForcePathStyle, format!("{v:?} is not true or false"))
            })?,
        };
        let settings = Self {
            endpoint: parse_endpoint(&required(S3Key::Endpoint)?)?,
            region: get(S3Key::Region)?.unwrap_or_else(|| DEFAULT_REGION.into()),
            bucket: required(S3Key::Bucket)?,
            access_key_id: required(S3Key::AccessKeyId)?,
            secret_access_key: Secret::new(required(S3Key::SecretAccessKey)?),
            session_token: get(S3Key::SessionToken)?.map(Secret::new),
            force_path_style,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Check the settings (no network access): an `http(s)` endpoint with a host, a valid
    /// bucket name (3 to 63 lower-case letters, digits, `-` and `.`), and a region and
    /// credentials that are not blank.
    pub fn validate(&self) -> Result<(), SettingError> {
        check_endpoint(&self.endpoint)?;
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(SettingError::s3(
                S3Key::Bucket,
                format!(
                    "{:?} is not a valid bucket name (3 to 63 lower-case letters, digits, '-' and '.')",
                    self.bucket
                ),
            ));
        }
        for (value, key) in [
            (self.region.as_str(), S3Key::Region),
            (self.access_key_id.as_str(), S3Key::AccessKeyId),
            (self.secret_access_key.expose(), S3Key::SecretAccessKey),
        ] {
            if value.trim().is_empty() {
                return Err(SettingError::s3(key, "must not be empty"));
            }
        }
        Ok(())
    }
}

/// Parse an S3 endpoint: an `http(s)` URL with a host.
pub fn parse_endpoint(input: &str) -> Result<Url, SettingError> {
    let url = Url::parse(input.trim()).map_err(|e| {
        SettingError::s3(
            S3Key::Endpoint,
            format!("{input:?} is not an http(s) URL with a host"),
        )
        .with_source(e)
    })?;
    check_endpoint(&url)?;
    Ok(url)
}

fn check_endpoint(url: &Url) -> Result<(), SettingError> {
    if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() {
        return Ok(());
    }
    Err(SettingError::s3(
        S3Key::Endpoint,
        format!("{url} is not an http(s) URL with a host"),
    ))
}

/// What clap's `BoolishValueParser` accepts, so `S3_FORCE_PATH_STYLE` reads the same with and
/// without the binaries.
fn parse_bool(input: &str) -> Option<bool> {
    match input.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The SHA-256 an upload of `spec` must have: the key's, for a content-addressed key
/// ([`content_address`]), else the declared `contentHash`. (A declared hash that contradicts
/// the key is refused by [`check_upload`] before this is asked.)
pub fn upload_hash(spec: &UploadSpec) -> Option<ContentHash> {
    content_address(&spec.key).or(spec.content_hash)
}

/// Check what an upload declares, before anything is signed: the `contentType` is printable
/// ASCII ([`check_content_type`]) and a `contentHash` agrees with a content-addressed key.
/// Both servers' sign-upload route and both signers call it; its `InvalidInput` is a 400.
pub fn check_upload(spec: &UploadSpec) -> crate::Result<()> {
    if let Some(t) = &spec.content_type {
        check_content_type(t).map_err(|e| crate::Error::InvalidInput {
            what: "contentType",
            reason: e.reason.to_owned(),
            source: None,
        })?;
    }
    if let (Some(declared), Some(named)) = (spec.content_hash, content_address(&spec.key))
        && declared != named
    {
        return Err(crate::Error::InvalidInput {
            what: "contentHash",
            reason: "does not match the content-addressed key".into(),
            source: None,
        });
    }
    Ok(())
}

/// The headers an upload of `spec` is sent with, for what it declares: `content-length`,
/// `content-type` and `x-amz-checksum-sha256` (the SHA-256, base64: [`upload_hash`], so a
/// content-addressed key always has it, declared or not). `S3Signer` signs all of them, so the
/// bucket refuses other bytes (WEAK-4, WEAK-17); `R2Proxy` hands out all but the length and
/// checks them itself in its file route.
pub fn upload_headers(spec: &UploadSpec) -> BTreeMap<String, String> {
    use base64::Engine;
    let mut headers = BTreeMap::new();
    if let Some(len) = spec.content_length {
        headers.insert("content-length".to_owned(), len.to_string());
    }
    if let Some(t) = &spec.content_type {
        headers.insert("content-type".to_owned(), t.clone());
    }
    if let Some(h) = upload_hash(spec) {
        headers.insert(
            "x-amz-checksum-sha256".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(h.as_bytes()),
        );
    }
    headers
}

#[cfg(feature = "cli")]
pub use cli::S3Args;

#[cfg(feature = "cli")]
mod cli {
    use clap::builder::BoolishValueParser;
    use url::Url;

    use super::{DEFAULT_REGION, S3Key, S3Settings, Secret, SettingError, parse_endpoint};

    /// The S3 flags of both server binaries, each with its environment variable (also its
    /// value name in `--help`, so a missing flag's error names the variable); flatten them
    /// into a binary's arguments with `#[command(flatten)]` and turn them into [`S3Settings`]
    /// with `try_from`.
    #[derive(Debug, Clone, clap::Args)]
    #[command(next_help_heading = "S3 bucket")]
    pub struct S3Args {
        /// S3 endpoint URL, e.g. `https://<account>.r2.cloudflarestorage.com` or
        /// `http://127.0.0.1:9000`.
        #[arg(
            long = S3Key::Endpoint.long(),
            env = S3Key::Endpoint.env(),
            value_parser = endpoint
        )]
        pub s3_endpoint: Option<Url>,
        /// Signing region (`auto` for R2, e.g. `us-east-1` for AWS).
        #[arg(
            long = S3Key::Region.long(),
            env = S3Key::Region.env(),
            default_value = DEFAULT_REGION
        )]
        pub s3_region: String,
        /// Bucket name.
        #[arg(long = S3Key::Bucket.long(), env = S3Key::Bucket.env())]
        pub s3_bucket: Option<String>,
        /// Access key id.
        #[arg(
            long = S3Key::AccessKeyId.long(),
            env = S3Key::AccessKeyId.env()
        )]
        pub s3_access_key_id: Option<String>,
        /// Secret access key.
        #[arg(
            long = S3Key::SecretAccessKey.long(),
            env = S3Key::SecretAccessKey.env(),
            hide_env_values = true,
            value_parser = secret
        )]
        pub s3_secret_access_key: Option<Secret>,
        /// Session token, for temporary credentials.
        #[arg(
            long = S3Key::SessionToken.long(),
            env = S3Key::SessionToken.env(),
            hide_env_values = true,
            value_parser = secret
        )]
        pub s3_session_token: Option<Secret>,
        /// Path-style URLs (`<endpoint>/<bucket>/<key>`, e.g. for MinIO) instead of
        /// virtual-hosted ones (`<bucket>.<host>/<key>`).
        #[arg(
            long = S3Key::ForcePathStyle.long(),
            env = S3Key::ForcePathStyle.env(),
            default_value_t = false,
            value_parser = BoolishValueParser::new(),
            action = clap::ArgAction::Set
        )]
        pub s3_force_path_style: bool,
    }

    /// The argument ids of the settings without which there is no bucket.
    const REQUIRED: [&str; 4] = [
        "s3_endpoint",
        "s3_bucket",
        "s3_access_key_id",
        "s3_secret_access_key",
    ];

    impl S3Args {
        /// Whether a bucket is configured (`--s3-endpoint` is given).
        pub fn is_set(&self) -> bool {
            self.s3_endpoint.is_some()
        }

        /// `cmd` (a binary's command, with these flags flattened in) with the endpoint,
        /// bucket and credentials required: for a binary that only works on S3.
        pub fn require(cmd: clap::Command) -> clap::Command {
            REQUIRED
                .into_iter()
                .fold(cmd, |cmd, id| cmd.mut_arg(id, |a| a.required(true)))
        }
    }

    impl TryFrom<S3Args> for S3Settings {
        type Error = SettingError;

        /// The settings the flags give, validated; a missing one is named.
        fn try_from(args: S3Args) -> Result<Self, SettingError> {
            fn given<T>(value: Option<T>, key: S3Key) -> Result<T, SettingError> {
                value.ok_or_else(|| SettingError::s3(key, "required with --s3-endpoint"))
            }
            let settings = S3Settings {
                endpoint: given(args.s3_endpoint, S3Key::Endpoint)?,
                region: args.s3_region,
                bucket: given(args.s3_bucket, S3Key::Bucket)?,
                access_key_id: given(args.s3_access_key_id, S3Key::AccessKeyId)?,
                secret_access_key: given(args.s3_secret_access_key, S3Key::SecretAccessKey)?,
                session_token: args.s3_session_token.filter(|t| !t.expose().is_empty()),
                force_path_style: args.s3_force_path_style,
            };
            settings.validate()?;
            Ok(settings)
        }
    }

    /// `--s3-endpoint`'s parser: clap adds the flag, so the message is the reason alone.
    fn endpoint(input: &str) -> Result<Url, String> {
        parse_endpoint(input).map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{}: {cause}", e.reason()),
            None => e.reason().to_owned(),
        })
    }

    fn secret(input: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret::new(input))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::collections::HashMap;
    use std::env::VarError;

    use super::*;
    use crate::types::{ContentHash, ObjectKey};

    fn lookup(vars: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Result<String, VarError> {
        let vars: HashMap<&str, String> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        move |name| vars.get(name).cloned().ok_or(VarError::NotPresent)
    }

    const GOOD: [(&str, &str); 4] = [
        ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("S3_BUCKET", "files"),
        ("S3_ACCESS_KEY_ID", "AK"),
        ("S3_SECRET_ACCESS_KEY", "SK"),
    ];

    #[test]
    fn from_env_reads_every_variable_with_defaults() {
        let s = S3Settings::from_lookup(lookup(&GOOD)).unwrap();
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(s.region, "auto");
        assert_eq!(s.bucket, "files");
        assert_eq!(s.access_key_id, "AK");
        assert_eq!(s.secret_access_key.expose(), "SK");
        assert_eq!(s.session_token, None);
        assert!(!s.force_path_style);
        let all = [
            &GOOD[..],
            &[
                ("S3_REGION", "us-east-1"),
                ("S3_SESSION_TOKEN", "T"),
                ("S3_FORCE_PATH_STYLE", "TRUE"),
            ],
        ]
        .concat();
        let s = S3Settings::from_lookup(lookup(&all)).unwrap();
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.session_token, Some(Secret::new("T")));
        assert!(s.force_path_style);
        assert!(
            !format!("{s:?}").contains("SK"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn bad_settings_name_the_flag_and_the_variable() {
        let missing = S3Settings::from_lookup(lookup(&GOOD[1..])).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--s3-endpoint (S3_ENDPOINT): required, not set"
        );
        let with = |k: &'static str, v: &'static str| {
            let mut vars = GOOD.to_vec();
            vars.retain(|(name, _)| *name != k);
            vars.push((k, v));
            S3Settings::from_lookup(lookup(&vars)).unwrap_err()
        };
        let e = with("S3_ENDPOINT", "not a url");
        assert!(
            e.to_string()
                .starts_with("--s3-endpoint (S3_ENDPOINT): \"not a url\" is not an http(s) URL"),
            "{e}"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parse error is kept"
        );
        assert_eq!(e.env(), "S3_ENDPOINT");
        assert!(
            with("S3_ENDPOINT", "ftp://h")
                .to_string()
                .contains("S3_ENDPOINT")
        );
        assert!(
            with("S3_BUCKET", "Bad_Bucket")
                .to_string()
                .starts_with("--s3-bucket (S3_BUCKET): \"Bad_Bucket\" is not a valid bucket name")
        );
        assert!(
            with("S3_FORCE_PATH_STYLE", "maybe")
                .to_string()
                .starts_with("--s3-force-path-style (S3_FORCE_PATH_STYLE)")
        );
        assert_eq!(
            with("S3_ACCESS_KEY_ID", " ").long(),
            "s3-access-key-id",
            "a blank variable is a missing one"
        );
    }

    #[test]
    fn upload_headers_are_what_the_upload_declares() {
        let hash = ContentHash::parse(&"ab".repeat(32)).unwrap();
        let spec = UploadSpec {
            key: ObjectKey::parse(format!("s/{hash}")).unwrap(),
            content_length: Some(42),
            content_type: Some("image/png".into()),
            content_hash: Some(hash),
        };
        let h = upload_headers(&spec);
        assert_eq!(h.len(), 3);
        assert_eq!(h["content-length"], "42");
        assert_eq!(h["content-type"], "image/png");
        assert_eq!(
            h["x-amz-checksum-sha256"],
            "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
        );
        let bare = UploadSpec {
            content_length: None,
            content_type: None,
            content_hash: None,
            ..spec
        };
        assert_eq!(
            upload_headers(&bare).into_iter().collect::<Vec<_>>(),
            vec![(
                "x-amz-checksum-sha256".to_owned(),
                "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=".to_owned()
            )],
            "a content-addressed key always carries its checksum"
        );
        let plain = UploadSpec {
            key: ObjectKey::parse("s/plain.txt").unwrap(),
            ..bare.clone()
        };
        assert!(upload_headers(&plain).is_empty());
        assert!(check_upload(&bare).is_ok());
        let contradicting = UploadSpec {
            content_hash: Some(ContentHash::parse(&"cd".repeat(32)).unwrap()),
            ..bare.clone()
        };
        assert!(matches!(
            check_upload(&contradicting),
            Err(crate::Error::InvalidInput {
                what: "contentHash",
                ..
            })
        ));
        let control = UploadSpec {
            content_type: Some("text/plain\n".into()),
            ..plain
        };
        assert!(matches!(
            check_upload(&control),
            Err(crate::Error::InvalidInput {
                what: "contentType",
                ..
            })
        ));
    }

    #[cfg(feature = "cli")]
    mod cli {
        use clap::{CommandFactory, FromArgMatches, Parser};

        use super::super::*;

        #[derive(Debug, Parser)]
        struct Args {
            #[command(flatten)]
            s3: S3Args,
        }

        #[test]
        fn every_key_is_a_flag_with_its_variable() {
            let cmd = Args::command();
            for key in S3Key::ALL {
                let arg = cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(key.long()))
                    .unwrap_or_else(|| panic!("no --{}", key.long()));
                assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(key.env()));
            }
        }

        #[test]
        fn flags_become_validated_settings() {
            let args = Args::try_parse_from([
                "t",
                "--s3-endpoint",
                "http://127.0.0.1:9000",
                "--s3-bucket",
                "files",
                "--s3-access-key-id",
                "AK",
                "--s3-secret-access-key",
                "SK",
                "--s3-force-path-style",
                "true",
            ])
            .unwrap();
            assert!(args.s3.is_set());
            let s = S3Settings::try_from(args.s3).unwrap();
            assert_eq!(s.region, DEFAULT_REGION);
            assert!(s.force_path_style);
            let e = Args::try_parse_from(["t", "--s3-endpoint", "nonsense"]).unwrap_err();
            assert!(e.to_string().contains("not an http(s) URL"), "{e}");
            let args = Args::try_parse_from(["t", "--s3-endpoint", "http://h"]).unwrap();
            let e = S3Settings::try_from(args.s3).unwrap_err();
            assert_eq!(e.long(), "s3-bucket");
            let args = Args::try_parse_from(["t"]).unwrap();
            assert!(!args.s3.is_set());
        }

        #[test]
        fn require_makes_the_bucket_flags_required() {
            let matches = S3Args::require(Args::command()).try_get_matches_from(["t"]);
            let e = matches.unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
            let m = S3Args::require(Args::command())
                .try_get_matches_from([
                    "t",
                    "--s3-endpoint=http://h",
                    "--s3-bucket=bkt",
                    "--s3-access-key-id=a",
                    "--s3-secret-access-key=s",
                ])
                .unwrap();
            assert!(Args::from_arg_matches(&m).unwrap().s3.is_set());
        }
    }
}
