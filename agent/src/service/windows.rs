//! The service control manager's side, through the `windows-service`
//! crate: install (register, configure, start), uninstall, and the
//! service's own life (Running; Stop or Shutdown cancel the agent, which
//! drains and keeps the rest spooled; Stopped with its exit code).

use super::{DESCRIPTION, DISPLAY_NAME, Layout, NAME, Properties, ServiceError};
use crate::config::AgentConfig;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// `%ProgramFiles%\Sobre\sobre-agent.exe` and `%ProgramData%\Sobre`.
pub fn layout() -> Layout {
    let pf = std::env::var_os("ProgramFiles").unwrap_or_else(|| r"C:\Program Files".into());
    Layout {
        exe: PathBuf::from(pf).join("Sobre").join("sobre-agent.exe"),
        state: crate::sys::state_dir(),
    }
}

fn manager_error(e: windows_service::Error) -> ServiceError {
    ServiceError::Manager(match &e {
        windows_service::Error::Winapi(io) => io.to_string(),
        other => other.to_string(),
    })
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ServiceError {
    let path = path.to_path_buf();
    move |source| ServiceError::Io { what, path, source }
}

/// Installs or upgrades the service and starts it; says each step on
/// stdout.
pub fn install(props: &Properties, replace_config: bool) -> Result<Layout, ServiceError> {
    if !crate::sys::privileged() {
        return Err(ServiceError::NotElevated);
    }
    let l = layout();
    let config = l.config();
    let keep = config.exists() && !replace_config;
    // Checked before anything is made: a refused install leaves nothing.
    let toml = if keep {
        props.agent_toml(&l.state)?
    } else {
        props.config_to_write(&l.state)?
    };
    sobre_base::files::create_private_dir(&l.state).map_err(io("cannot create", &l.state))?;
    if keep {
        let note = if props.is_empty() {
            ""
        } else {
            " (the properties are not applied: --replace-config rewrites it)"
        };
        println!("kept {}{note}", config.display());
    } else {
        use std::io::Write;
        sobre_base::files::create_private(&config)
            .and_then(|mut f| f.write_all(toml.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(io("cannot write", &config))?;
        println!("wrote {}", config.display());
    }
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(manager_error)?;
    let access = ServiceAccess::QUERY_STATUS
        | ServiceAccess::START
        | ServiceAccess::STOP
        | ServiceAccess::CHANGE_CONFIG;
    let existing = manager.open_service(NAME, access).ok();
    if let Some(s) = &existing {
        // An upgrade: the running binary cannot be replaced.
        stop(s)?;
    }
    copy_binary(&l)?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: l.exe.clone(),
        launch_arguments: l.launch_arguments(),
        dependencies: Vec::new(),
        // LocalSystem: SMBIOS, every profile's folders, the machine's
        // sessions.
        account_name: None,
        account_password: None,
    };
    let service = match existing {
        Some(s) => {
            s.change_config(&info).map_err(manager_error)?;
            s
        }
        None => manager
            .create_service(&info, access)
            .map_err(manager_error)?,
    };
    println!("registered the {NAME} service ({})", l.exe.display());
    configure(&service);
    service.start(&[] as &[&OsStr]).map_err(manager_error)?;
    println!("started; its log: {}", l.log().display());
    Ok(l)
}

/// Description, restart on failure, delayed start: wanted, not needed
/// (a service manager that lacks one still runs the agent).
fn configure(service: &windows_service::service::Service) {
    let restart = |s| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(s),
    };
    let steps: [(&str, windows_service::Result<()>); 4] = [
        ("description", service.set_description(DESCRIPTION)),
        (
            "restart on failure",
            service.update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart(10), restart(60), restart(300)]),
            }),
        ),
        (
            "restart after an error exit",
            service.set_failure_actions_on_non_crash_failures(true),
        ),
        // Not in the way of the person's logon at boot.
        ("delayed start", service.set_delayed_auto_start(true)),
    ];
    for (what, r) in steps {
        if let Err(e) = r {
            println!(
                "warning: could not set the service's {what}: {}",
                manager_error(e)
            );
        }
    }
}

fn copy_binary(l: &Layout) -> Result<(), ServiceError> {
    let me = std::env::current_exe().map_err(io("cannot find", &l.exe))?;
    let same = std::fs::canonicalize(&me).ok() == std::fs::canonicalize(&l.exe).ok();
    if same {
        return Ok(());
    }
    if let Some(dir) = l.exe.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    }
    std::fs::copy(&me, &l.exe).map_err(io("cannot copy the agent to", &l.exe))?;
    println!("copied {} to {}", me.display(), l.exe.display());
    Ok(())
}

/// Stops `service` if it runs, waiting for it (its drain) at most 60 s.
fn stop(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    let status = service.query_status().map_err(manager_error)?;
    if status.current_state == ServiceState::Stopped {
        return Ok(());
    }
    println!("stopping the {NAME} service");
    if status.current_state != ServiceState::StopPending {
        service.stop().map_err(manager_error)?;
    }
    let until = Instant::now() + Duration::from_secs(60);
    // The service manager has no wait call: it is asked again.
    while Instant::now() < until {
        if service.query_status().map_err(manager_error)?.current_state == ServiceState::Stopped {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(ServiceError::Manager(format!(
        "the {NAME} service did not stop within 60 s"
    )))
}

/// Stops and deletes the service and removes the installed binary; with
/// `purge`, the state folder too.
pub fn uninstall(purge: bool) -> Result<(), ServiceError> {
    if !crate::sys::privileged() {
        return Err(ServiceError::NotElevated);
    }
    let l = layout();
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(manager_error)?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    match manager.open_service(NAME, access) {
        Ok(s) => {
            stop(&s)?;
            s.delete().map_err(manager_error)?;
            println!("removed the {NAME} service");
        }
        Err(e) => println!("no {NAME} service to remove ({})", manager_error(e)),
    }
    if l.exe.exists() && std::env::current_exe().ok().as_deref() != Some(l.exe.as_path()) {
        std::fs::remove_file(&l.exe).map_err(io("cannot remove", &l.exe))?;
        if let Some(dir) = l.exe.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        println!("removed {}", l.exe.display());
    }
    if purge {
        match std::fs::remove_dir_all(&l.state) {
            Ok(()) => println!("removed {}", l.state.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot remove", &l.state)(e)),
        }
    } else if l.state.exists() {
        println!("kept {} (--purge removes it)", l.state.display());
    }
    Ok(())
}

/// The config `run` hands to the service's main (the service manager
/// calls it on a thread of its own, with no way to pass it along).
static CONFIG: OnceLock<Mutex<Option<AgentConfig>>> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Runs as the service: logs to `agent.log` beside the spool
/// (`%ProgramData%\Sobre`), hands over to the service manager and returns
/// when the service has stopped.
pub fn run(cfg: AgentConfig) -> Result<(), ServiceError> {
    let log = cfg.log_path();
    if let Some(dir) = log.parent() {
        sobre_base::files::ensure_private_dir(dir).map_err(io("cannot create", dir))?;
    }
    sobre_base::shutdown::init_logging_to_file("info,rumqttc=warn", &log, super::LOG_CAP_BYTES)
        .map_err(io("cannot open the log", &log))?;
    let _ = CONFIG.set(Mutex::new(Some(cfg)));
    windows_service::service_dispatcher::start(NAME, ffi_service_main).map_err(|e| {
        tracing::error!(error = %manager_error(e), "not started by the service manager");
        ServiceError::Manager(
            "`service run` is for the service manager; to try the agent, run `sobre-agent`".into(),
        )
    })
}

fn service_main(_args: Vec<OsString>) {
    let cfg = CONFIG
        .get()
        .and_then(|c| c.lock().ok().and_then(|mut c| c.take()));
    if let Some(cfg) = cfg
        && let Err(e) = serve(cfg)
    {
        tracing::error!(error = %e, "the service stopped on an error");
    }
}

fn status(state: ServiceState, exit: u32, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

fn serve(cfg: AgentConfig) -> Result<(), ServiceError> {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let handle = service_control_handler::register(NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            stop.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(manager_error)?;
    let drain = Duration::from_millis(cfg.transport.drain_timeout_ms) + Duration::from_secs(5);
    let set = |s| {
        if let Err(e) = handle.set_service_status(s) {
            tracing::warn!(error = %manager_error(e), "cannot tell the service manager our state");
        }
    };
    set(status(ServiceState::Running, 0, Duration::ZERO));
    // The lowest CPU and I/O priority: the person's work comes first.
    if let Err(e) = crate::sys::background_priority() {
        tracing::warn!(error = %e, "cannot lower the agent's priority");
    }
    if let Ok(exe) = std::env::current_exe() {
        crate::scan::child::use_child_process(exe);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)?;
    let result = rt.block_on(async {
        let agent = crate::run_configured(cfg, cancel.clone());
        tokio::pin!(agent);
        tokio::select! {
            r = &mut agent => r,
            () = cancel.cancelled() => {
                tracing::info!("stop asked by the service manager");
                set(status(ServiceState::StopPending, 0, drain));
                agent.await
            }
        }
    });
    let exit = match &result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped on an error");
            1
        }
    };
    set(status(ServiceState::Stopped, exit, Duration::ZERO));
    Ok(())
}
