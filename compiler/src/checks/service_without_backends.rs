//! `service-without-backends`: a service that cannot deliver a connection anywhere.
//!
//! **What it does.** Reports
//! - (warning) a `service` with no `backend`;
//! - (error) a backend that is the service's own VIP and port.
//!
//! Why it matters, an example and the fix: spec.md, Checks › `service-without-backends` (the user's reference; the
//! spec test runs its example). This file says how the check decides.

use super::{AfterErrors, Check};
use crate::model::Model;
use netcfg_lang::{Code, Diagnostic, Severity};
use std::net::SocketAddr;

pub const CHECK: Check = Check {
    code: Code::new(
        "service-without-backends",
        &[Severity::Warning, Severity::Error],
        "a service with no backend, or a backend that is the service itself",
    ),
    run,
    after_errors: AfterErrors::SkipBrokenNamespace,
};

fn run(model: &Model, diags: &mut Vec<Diagnostic>) {
    for (_, netns) in model.namespaces() {
        for svc in &netns.services {
            let endpoint = SocketAddr::new(svc.vip.value, svc.port.value);
            if svc.backends.is_empty() {
                diags.push(
                    Diagnostic::warning(
                        CHECK.code,
                        svc.name.span,
                        format!("service `{}` has no backends", svc.name.value),
                    )
                    .with_label(format!("connections to `{endpoint}/{}` are dropped", svc.proto.keyword()))
                    .with_help(format!(
                        "add `backend \"ADDRESS:PORT\"` entries to `{}`, or remove the service",
                        svc.name.value
                    )),
                );
            }
            for b in &svc.backends {
                if b.addr.to_canonical() == svc.vip.value.to_canonical() && b.port == svc.port.value {
                    diags.push(
                        Diagnostic::error(
                            CHECK.code,
                            b.span,
                            format!("backend `{endpoint}` is service `{}` itself", svc.name.value),
                        )
                        .with_label("connections are translated back to the service they came to")
                        .with_secondary(svc.vip.span, "the service's VIP")
                        .with_help("point the backend at an endpoint that serves the traffic (a pod or host address)"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture::check;

    #[test]
    fn service_with_no_backend() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    service "web" vip="10.96.0.10" port=80
//           ^^^ warning service-without-backends
    service "dns" vip="10.96.0.53" port=53 proto="udp" { }
//           ^^^ warning service-without-backends
    service "api" vip="10.96.0.11" port=443 { backend "192.0.2.3:8443"; }
}
"#,
        );
        assert_eq!(d[0].message, "service `web` has no backends");
        assert_eq!(d[0].primary.message, "connections to `10.96.0.10:80/tcp` are dropped");
        assert_eq!(d[1].primary.message, "connections to `10.96.0.53:53/udp` are dropped");
    }

    #[test]
    fn backend_that_is_the_service_itself() {
        let d = check(
            r#"
node "n" {
    forwarding #true
    service "web" vip="10.96.0.10" port=80 {
        backend "192.0.2.3:8080"
        backend "10.96.0.10:80"
//               ^^^^^^^^^^^^^ error service-without-backends
        backend "10.96.0.10:8080"
    }
    service "v6" vip="fd96::10" port=80 { backend "[fd96::10]:80"; }
//                                                 ^^^^^^^^^^^^^ error service-without-backends
}
"#,
        );
        assert_eq!(d[0].message, "backend `10.96.0.10:80` is service `web` itself");
        assert_eq!(d[1].message, "backend `[fd96::10]:80` is service `v6` itself");
    }

    #[test]
    fn services_in_every_namespace_are_checked() {
        check(
            r#"
node "n" {
    netns "gw" {
        forwarding #true
        service "ingress" vip="198.51.100.10" port=443
//               ^^^^^^^ warning service-without-backends
    }
}
"#,
        );
    }
}
