//! The pseudo-terminal of an `exec -t`: the kubelet keeps the master side (reading
//! the command's output, writing its input, setting its size) and hands the slave
//! side to the exec helper as its stdin, stdout and stderr.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

pub struct Terminal {
    master: Arc<OwnedFd>,
}

fn close_on_exec(fd: &OwnedFd) -> std::io::Result<()> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map(|_| ())
        .map_err(std::io::Error::from)
}

impl Terminal {
    /// A new terminal of `size`, and its slave side for the command.
    pub fn open(size: TerminalSize) -> std::io::Result<(Terminal, OwnedFd)> {
        let pty = nix::pty::openpty(Some(&winsize(size)), None).map_err(std::io::Error::from)?;
        // Neither side may leak into other processes the kubelet starts meanwhile.
        close_on_exec(&pty.master)?;
        close_on_exec(&pty.slave)?;
        Ok((Terminal { master: Arc::new(pty.master) }, pty.slave))
    }

    pub fn resize(&self, size: TerminalSize) -> std::io::Result<()> {
        let ws = winsize(size);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        if unsafe { nix::libc::ioctl(self.master.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The master side as a reader (the command's output) and a writer (its input),
    /// on separate descriptors so a pending read never holds up a write. A read ends
    /// with EIO once the command and everything it started have closed the terminal.
    #[allow(clippy::type_complexity)]
    pub fn io(&self) -> std::io::Result<(Pin<Box<dyn AsyncRead + Send>>, Pin<Box<dyn AsyncWrite + Send>>)> {
        let reader = std::fs::File::from(self.master.try_clone()?);
        let writer = std::fs::File::from(self.master.try_clone()?);
        Ok((Box::pin(tokio::fs::File::from_std(reader)), Box::pin(tokio::fs::File::from_std(writer))))
    }
}

fn winsize(size: TerminalSize) -> nix::pty::Winsize {
    nix::pty::Winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 }
}
