//! The cluster's own certificate authority, which issues every node the certificate it presents
//! on the internal RPC (mutual TLS, see [`crate::rpc_tls`]).
//!
//! A private CA rather than a shared secret: a node then holds only its own key, a stolen node
//! certificate names one node, and the RPC is encrypted as well as authenticated. The CA's key
//! is needed only where certificates are issued (`tessera up` / `tessera ca`); nodes need the
//! CA's certificate, their own certificate and their own key.
//!
//! The CA's distinguished name is fixed ([`CA_NAME`]), so issuing needs only the CA's key and
//! no X.509 parser: a certificate is verified by the CA's key, not its name, so two clusters'
//! CAs of the same name still never accept each other's nodes.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::rpc_tls::{self, peer_name};
use crate::types::NodeId;

/// Common name of every Tessera cluster CA.
pub const CA_NAME: &str = "Tessera cluster CA";

/// Years a CA certificate is valid (from January 1st of last year).
const CA_YEARS: i32 = 30;
/// Years a node certificate is valid. There is no renewal yet: `tessera ca --id N` issues a
/// new one (docs/architecture.md).
const NODE_YEARS: i32 = 10;

/// Why issuing failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A CA: its key and its self-signed certificate.
pub struct ClusterCa {
    key: KeyPair,
    cert_pem: String,
}

/// Where a CA directory keeps its certificate and key.
fn ca_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// This year, from the system clock (close enough for validity periods that start a year back).
fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

fn serial() -> Result<SerialNumber, CaError> {
    let mut bytes: [u8; 16] =
        crate::random().map_err(io_error(Path::new("the OS random source")))?;
    // Positive, as RFC 5280 asks of serial numbers.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The CA's parameters, the same every time: issuing rebuilds them instead of parsing the CA's
/// certificate.
fn ca_params(not_after_years: i32) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + not_after_years, 1, 1);
    params
}

/// A node's certificate and key, PEM encoded.
pub struct NodeCredentials {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    /// A new CA with a fresh ECDSA P-256 key.
    pub fn generate() -> Result<ClusterCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(CA_YEARS);
        params.serial_number = Some(serial()?);
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(ClusterCa { key, cert_pem })
    }

    /// The CA kept in `dir`, created there first if `dir` holds none. Returns whether it was
    /// created.
    pub fn open_or_create(dir: &Path) -> Result<(ClusterCa, bool), CaError> {
        let (cert_path, key_path) = ca_files(dir);
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            return Ok((ClusterCa { key, cert_pem }, false));
        }
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let ca = ClusterCa::generate()?;
        write_file(&key_path, ca.key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
        Ok((ca, true))
    }

    /// The CA's certificate, which every node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for node `id`: its name is [`peer_name`]`(id)`, and it serves as both a
    /// server and a client certificate (every node is both on the RPC).
    pub fn issue(&self, id: NodeId) -> Result<NodeCredentials, CaError> {
        self.issue_for(
            &[peer_name(id)],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A server certificate for `hosts` (IP addresses or DNS names), e.g. for HTTPS on the
    /// public port of a test cluster. Browsers do not trust this CA; production HTTPS uses a
    /// certificate from a public or company CA.
    pub fn issue_server(&self, hosts: &[String]) -> Result<NodeCredentials, CaError> {
        self.issue_for(hosts, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    fn issue_for(
        &self,
        hosts: &[String],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<NodeCredentials, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, hosts.first().map_or("", String::as_str));
        params.distinguished_name = name;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(h.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + NODE_YEARS, 1, 1);
        let issuer = Issuer::new(ca_params(CA_YEARS), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCredentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Gives node `id` its files in its data dir `data` (see [`rpc_tls::files`]) unless it
    /// already has a certificate from this CA. Returns whether it issued one.
    pub fn provision(&self, id: NodeId, data: &Path, renew: bool) -> Result<bool, CaError> {
        let files = rpc_tls::files(data);
        let same_ca = std::fs::read_to_string(&files.ca).is_ok_and(|pem| pem == self.cert_pem);
        if !renew && same_ca && files.cert.exists() && files.key.exists() {
            return Ok(false);
        }
        let dir = files.ca.parent().unwrap_or(data);
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let node = self.issue(id)?;
        write_file(&files.key, node.key_pem.as_bytes(), 0o600)?;
        write_file(&files.cert, node.cert_pem.as_bytes(), 0o644)?;
        write_file(&files.ca, self.cert_pem.as_bytes(), 0o644)?;
        Ok(true)
    }
}

/// Writes `path` whole (a temporary file renamed over it, so a crash never leaves half a key),
/// created with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_reopened_and_provisions_each_node_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, created) = ClusterCa::open_or_create(&dir.path().join("ca")).unwrap();
        assert!(created);
        let (again, created) = ClusterCa::open_or_create(&dir.path().join("ca")).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_pem(), again.cert_pem());
        let data = dir.path().join("node-1");
        assert!(again.provision(1, &data, false).unwrap());
        assert!(!ca.provision(1, &data, false).unwrap());
        let key = rpc_tls::files(&data).key;
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Another CA's node files are replaced.
        let other = ClusterCa::generate().unwrap();
        assert!(other.provision(1, &data, false).unwrap());
        assert_eq!(
            std::fs::read_to_string(rpc_tls::files(&data).ca).unwrap(),
            other.cert_pem()
        );
    }
}
