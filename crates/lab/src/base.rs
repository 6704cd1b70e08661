//! The cached base image every host boots from (overlay lower dir).
//!
//! Built once with debootstrap into `base.partial` and renamed to `base` only
//! when complete, so an interrupted build is thrown away instead of reused. A
//! stamp inside the image records the recipe; a changed recipe rebuilds.

use std::path::Path;
use std::time::Instant;

use super::cmd;
use super::config::LabOs;
use super::error::LabError;
use super::host;
use super::mounts;
use super::paths::Paths;
use super::procs::Snapshot;
use super::LabEvent;

/// Bump when the customisation below changes, to force a rebuild.
const RECIPE_VERSION: u32 = 1;
const MIRROR: &str = "http://deb.debian.org/debian";

/// Packages on top of debootstrap's minbase: a bootable systemd host with
/// sshd, Python for roles, and the usual admin tools.
pub(crate) const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "iproute2",
    "sudo",
    "ca-certificates",
    "gnupg",
    "curl",
    "procps",
    "less",
];

/// Units masked in the image, and why:
/// * the gettys: hosts are reached over SSH only, and in a container the
///   console is nspawn's log pipe;
/// * apt's daily timers: they take the dpkg lock at random times and make
///   orchestrated `apt-get install`s fail with "Could not get lock";
/// * e2scrub/fstrim: there are no block devices of the host's own to scrub or trim.
pub(crate) const MASKED_UNITS: &[&str] = &[
    "console-getty.service",
    "getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
];

/// Units masked in one release's image only: Debian 13's systemd-modules-load fails
/// in a container (libkmod finds no modules of the running kernel) and leaves every
/// host "degraded"; a container cannot load kernel modules anyway.
pub(crate) fn masked_units(os: LabOs) -> Vec<&'static str> {
    let mut units = MASKED_UNITS.to_vec();
    if os == LabOs::Debian13 {
        units.push("systemd-modules-load.service");
    }
    units
}

/// Where the stamp lives inside the image (visible in every host, which is
/// handy to tell which recipe a host runs).
const STAMP_REL: &str = "etc/bosun-lab/base-stamp";

/// The recipe identity written into the image.
pub(crate) fn stamp(os: LabOs) -> String {
    format!(
        "bosun-lab-base recipe={RECIPE_VERSION} suite={} variant=minbase packages={} masked={}\n",
        os.suite(),
        PACKAGES.join(","),
        masked_units(os).join(",")
    )
}

/// Whether `base` is a complete image built by the current recipe.
pub(crate) fn is_current(base: &Path, os: LabOs) -> bool {
    std::fs::read_to_string(base.join(STAMP_REL))
        .map(|s| s == stamp(os))
        .unwrap_or(false)
}

/// Ensures `<state>/base` is a complete, current image; builds it if not.
/// Returns whether a build happened (then host disks made from an older
/// image are stale and must be recreated; the caller handles that).
pub(crate) async fn ensure(
    paths: &Paths,
    os: LabOs,
    controller_pubkey: &str,
    ev: &(dyn Fn(LabEvent) + Send + Sync),
) -> Result<bool, LabError> {
    // Leftovers of an interrupted build or replacement are never reused. A
    // debootstrap orphaned by a killed `up` may still be writing there.
    let builders = Snapshot::take(&paths.state).builders_in(&paths.base_partial);
    if !builders.is_empty() {
        step(
            ev,
            format!("stopping {} leftover image build processes", builders.len()),
        );
        host::kill_hard(&builders).await?;
    }
    mounts::safe_remove_dir(&paths.base_partial).await?;
    mounts::safe_remove_dir(&paths.base_old).await?;
    if is_current(&paths.base, os) {
        return Ok(false);
    }
    if paths.base.exists() {
        let in_use: Vec<String> = mounts::read_mounts()?
            .iter()
            .filter(|m| mounts::overlay_has_lower(m, &paths.base))
            .map(|m| m.mountpoint.display().to_string())
            .collect();
        if !in_use.is_empty() {
            return Err(LabError::BaseInUse {
                path: paths.base.clone(),
                hosts: in_use.join(", "),
            });
        }
    }
    cmd::require_tools(cmd::BUILD_TOOLS)?;
    let started = Instant::now();
    step(
        ev,
        format!(
            "building base image (debootstrap {}, about 1-2 minutes) in {}",
            os.suite(),
            paths.base_partial.display()
        ),
    );
    debootstrap(&paths.base_partial, os).await?;
    step(ev, "customising base image".into());
    customise(&paths.base_partial, os, controller_pubkey).await?;
    write(&paths.base_partial.join(STAMP_REL), &stamp(os)).await?;

    if paths.base.exists() {
        rename(&paths.base, &paths.base_old).await?;
    }
    rename(&paths.base_partial, &paths.base).await?;
    mounts::safe_remove_dir(&paths.base_old).await?;
    step(
        ev,
        format!(
            "base image ready in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(true)
}

fn step(ev: &(dyn Fn(LabEvent) + Send + Sync), message: String) {
    tracing::info!("{message}");
    ev(LabEvent::Step {
        host: None,
        message,
    });
}

async fn debootstrap(target: &Path, os: LabOs) -> Result<(), LabError> {
    let include = format!("--include={}", PACKAGES.join(","));
    let t = target.to_string_lossy().into_owned();
    let args = [
        "--variant=minbase",
        include.as_str(),
        os.suite(),
        t.as_str(),
        MIRROR,
    ];
    let out = cmd::run_unchecked("debootstrap", &args).await?;
    if out.success {
        return Ok(());
    }
    // debootstrap's own log says which package or download failed.
    let log =
        std::fs::read_to_string(target.join("debootstrap/debootstrap.log")).unwrap_or_default();
    Err(LabError::Command {
        command: cmd::display("debootstrap", &args),
        status: out.status,
        stderr: format!(
            "{}\n{}",
            cmd::tail_lines(&out.stderr, 10),
            cmd::tail_lines(&log, 20)
        ),
    })
}

async fn write(path: &Path, content: &str) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| LabError::io("create", parent, e))?;
    }
    tokio::fs::write(path, content)
        .await
        .map_err(|e| LabError::io("write", path, e))
}

async fn rename(from: &Path, to: &Path) -> Result<(), LabError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| LabError::io("rename", from, e))
}

async fn remove_file(path: &Path) -> Result<(), LabError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("delete", path, e)),
    }
}

async fn chroot(root: &Path, args: &[&str]) -> Result<(), LabError> {
    let r = root.to_string_lossy().into_owned();
    let mut full = vec![r.as_str()];
    full.extend_from_slice(args);
    cmd::run("chroot", &full).await.map(|_| ())
}

/// Copies this machine's extra CA certificates into the image. The package
/// registries are reached through a TLS-intercepting proxy whose CA lives
/// there; without it pip and npm inside the hosts fail certificate checks.
async fn copy_local_cas(root: &Path) -> Result<usize, LabError> {
    let src = Path::new("/usr/local/share/ca-certificates");
    let dst = root.join("usr/local/share/ca-certificates");
    tokio::fs::create_dir_all(&dst)
        .await
        .map_err(|e| LabError::io("create", &dst, e))?;
    let mut copied = 0;
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(mut rd) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| LabError::io("list", &dir, e))?
        {
            let p = entry.path();
            let rel = p.strip_prefix(src).unwrap_or(&p).to_path_buf();
            let ft = entry
                .file_type()
                .await
                .map_err(|e| LabError::io("stat", &p, e))?;
            if ft.is_dir() {
                tokio::fs::create_dir_all(dst.join(&rel))
                    .await
                    .map_err(|e| LabError::io("create", dst.join(&rel), e))?;
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "crt") {
                tokio::fs::copy(&p, dst.join(&rel))
                    .await
                    .map_err(|e| LabError::io("copy", &p, e))?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Turns the debootstrapped tree into a lab host image.
async fn customise(root: &Path, os: LabOs, controller_pubkey: &str) -> Result<(), LabError> {
    let suite = os.suite();
    write(
        &root.join("etc/apt/sources.list"),
        &format!(
            "deb {MIRROR} {suite} main\n\
             deb {MIRROR} {suite}-updates main\n\
             deb http://deb.debian.org/debian-security {suite}-security main\n"
        ),
    )
    .await?;
    // Roles install exactly what they name; recommends would pull in MTAs,
    // docs and daemons nobody asked for.
    write(
        &root.join("etc/apt/apt.conf.d/90bosun-lab"),
        "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n",
    )
    .await?;
    if copy_local_cas(root).await? > 0 {
        chroot(root, &["update-ca-certificates"]).await?;
    }
    // Controller key; written per host again at boot in case the identity was
    // regenerated after the image was built.
    write(
        &root.join("root/.ssh/authorized_keys"),
        &format!("{controller_pubkey}\n"),
    )
    .await?;
    set_mode(&root.join("root/.ssh"), 0o700).await?;
    set_mode(&root.join("root/.ssh/authorized_keys"), 0o600).await?;
    write(
        &root.join("etc/ssh/sshd_config.d/90-bosun-lab.conf"),
        "# bosun lab: keys only.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
    )
    .await?;
    // openssh-server's postinst generated host keys here; every overlay would
    // share them. Each host gets its own before first boot instead.
    let ssh_dir = root.join("etc/ssh");
    let mut rd = tokio::fs::read_dir(&ssh_dir)
        .await
        .map_err(|e| LabError::io("list", &ssh_dir, e))?;
    while let Some(entry) = rd
        .next_entry()
        .await
        .map_err(|e| LabError::io("list", &ssh_dir, e))?
    {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            remove_file(&entry.path()).await?;
        }
    }
    // Per-host identity is written before each boot; the image carries none,
    // and D-Bus must follow /etc/machine-id rather than keep the build's id.
    write(&root.join("etc/machine-id"), "").await?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    remove_file(&dbus_id).await?;
    if let Some(parent) = dbus_id.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| LabError::io("create", parent, e))?;
    }
    tokio::fs::symlink("/etc/machine-id", &dbus_id)
        .await
        .map_err(|e| LabError::io("create symlink", &dbus_id, e))?;
    write(&root.join("etc/hostname"), "localhost\n").await?;
    write(
        &root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    .await?;
    // debootstrap copies the build machine's resolv.conf; hosts get their own.
    remove_file(&root.join("etc/resolv.conf")).await?;
    write(&root.join("etc/default/locale"), "LANG=C.UTF-8\n").await?;
    for p in ["etc/hostname", "etc/hosts", "etc/machine-id"] {
        set_mode(&root.join(p), 0o644).await?;
    }
    chroot(root, &["systemctl", "enable", "systemd-networkd.service"]).await?;
    let mut mask = vec!["systemctl", "mask"];
    mask.extend(masked_units(os));
    chroot(root, &mask).await?;
    // The .deb cache is ~60 MB nobody needs in every host's view.
    chroot(root, &["apt-get", "clean"]).await?;
    Ok(())
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| LabError::io("chmod", path, e))
}

/// Removes the cached images of every release (and build leftovers) for `destroy`.
pub(crate) async fn remove(paths: &Paths) -> Result<(), LabError> {
    for os in LabOs::ALL {
        let paths = Paths::for_os(paths.state.clone(), os);
        for p in [&paths.base_partial, &paths.base_old, &paths.base] {
            mounts::safe_remove_dir(p).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_names_recipe_and_packages() {
        let s = stamp(LabOs::Debian12);
        assert!(s.starts_with(&format!("bosun-lab-base recipe={RECIPE_VERSION} ")));
        assert!(s.contains("openssh-server"));
        assert!(s.contains("apt-daily.timer"));
        assert!(s.ends_with('\n'));
    }

    #[test]
    fn required_packages_present() {
        for p in [
            "systemd",
            "systemd-sysv",
            "dbus",
            "openssh-server",
            "python3",
            "iproute2",
            "sudo",
            "ca-certificates",
            "gnupg",
            "curl",
            "procps",
            "less",
        ] {
            assert!(PACKAGES.contains(&p), "{p}");
        }
    }

    #[test]
    fn missing_base_is_not_current() {
        assert!(!is_current(Path::new("/nonexistent/base"), LabOs::Debian12));
    }
}
