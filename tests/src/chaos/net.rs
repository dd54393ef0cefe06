//! Network partitions between node processes on one loopback. Every node runs under its own
//! uid, so iptables' `owner` match tells whose packet it is; a cut between nodes `a` and `b`
//! drops `a`'s packets to `b`'s RPC port and `b`'s to `a`'s. The rules live in one chain of
//! the harness's private network namespace (`sandbox`), emptied on every heal.

use std::io;

use super::sandbox::run;

const CHAIN: &str = "TESSERA_CHAOS";

pub struct Firewall {
    uid_base: u32,
    /// `(node id, RPC port)`.
    rpc_ports: Vec<(u64, u16)>,
}

impl Firewall {
    pub fn new(uid_base: u32, rpc_ports: Vec<(u64, u16)>) -> io::Result<Firewall> {
        run("iptables", &["-w", "-N", CHAIN])?;
        run("iptables", &["-w", "-A", "OUTPUT", "-j", CHAIN])?;
        Ok(Firewall {
            uid_base,
            rpc_ports,
        })
    }

    fn port(&self, id: u64) -> u16 {
        self.rpc_ports
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, p)| *p)
            .expect("node of this cluster")
    }

    /// Drops `from`'s packets to `to`'s RPC port.
    fn drop_one_way(&self, from: u64, to: u64) -> io::Result<()> {
        let uid = (self.uid_base + from as u32).to_string();
        let port = self.port(to).to_string();
        run(
            "iptables",
            &[
                "-w",
                "-A",
                CHAIN,
                "-p",
                "tcp",
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-d",
                "127.0.0.1",
                "--dport",
                &port,
                "-j",
                "DROP",
            ],
        )
    }

    /// Cuts every node of `left` from every node of `right`, both ways.
    pub fn cut(&self, left: &[u64], right: &[u64]) -> io::Result<()> {
        for &a in left {
            for &b in right {
                self.drop_one_way(a, b)?;
                self.drop_one_way(b, a)?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> io::Result<()> {
        run("iptables", &["-w", "-F", CHAIN])
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        // The namespace takes the rules with it anyway; this keeps a long-lived one clean.
        let _ = run("iptables", &["-w", "-F", CHAIN]);
        let _ = run("iptables", &["-w", "-D", "OUTPUT", "-j", CHAIN]);
        let _ = run("iptables", &["-w", "-X", CHAIN]);
    }
}
