//! The campaign runs in network and mount namespaces of its own: its firewall rules and its
//! tmpfs mounts exist only there and vanish with the last process in them — after a normal end,
//! a panic, ctrl-c or a SIGKILL alike — and no other process on the machine sees them.

use std::io;
use std::process::Command;

/// Moves this process into new network and mount namespaces and brings their loopback up. Must
/// be called before any thread is started (namespaces are per thread until then inherited).
pub fn enter() -> io::Result<()> {
    // SAFETY: plain system calls on this process's own namespaces, before any other thread.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "unshare(network, mount): {} (the chaos harness needs root)",
                    io::Error::last_os_error()
                ),
            ));
        }
        // Mounts made from here on stay private to this namespace.
        let root = c"/";
        let none = std::ptr::null();
        if libc::mount(
            none,
            root.as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            none.cast(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    run("ip", &["link", "set", "lo", "up"])
}

/// Runs a system tool, turning a failure into an error that names the command.
pub fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{program}: {e} (scripts/setup.sh installs it)"),
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
