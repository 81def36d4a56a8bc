//! References across namespaces (a route to a Service, a Gateway to a Secret) are allowed only
//! where a ReferenceGrant in the target's namespace says so.

use crate::api::gateway::ReferenceGrant;

/// One side of a reference: an object's group (`""` for the core group), kind and namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// Whether `from` may refer to the object `name` of `to`. Within a namespace no grant is
/// needed; across, a grant in `to.namespace` must list both sides (a `to` without a name
/// covers every object of its kind).
pub fn permits<'g>(
    grants: impl IntoIterator<Item = &'g ReferenceGrant>,
    from: Side<'_>,
    to: Side<'_>,
    name: &str,
) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants
        .into_iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to.namespace))
        .any(|g| {
            let from_ok = g.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            });
            let to_ok = g.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n == name)
            });
            from_ok && to_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(yaml: &str) -> ReferenceGrant {
        serde_saphyr::from_str(yaml).expect("a ReferenceGrant")
    }

    const ROUTE: Side<'static> = Side {
        group: "gateway.networking.k8s.io",
        kind: "HTTPRoute",
        namespace: "shop",
    };
    const SERVICE: Side<'static> = Side {
        group: "",
        kind: "Service",
        namespace: "backends",
    };

    #[test]
    fn a_grant_in_the_targets_namespace_names_both_sides() {
        let g = grant(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: { name: g, namespace: backends }\nspec:\n  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop }]\n  to: [{ group: '', kind: Service, name: cart }]\n",
        );
        let grants = [g];
        assert!(permits(&grants, ROUTE, SERVICE, "cart"));
        assert!(
            !permits(&grants, ROUTE, SERVICE, "other"),
            "the grant names one Service"
        );
        let grpc = Side {
            kind: "GRPCRoute",
            ..ROUTE
        };
        assert!(
            !permits(&grants, grpc, SERVICE, "cart"),
            "the grant is for HTTPRoutes"
        );
        let elsewhere = Side {
            namespace: "web",
            ..ROUTE
        };
        assert!(!permits(&grants, elsewhere, SERVICE, "cart"));
        // No grant needed within a namespace; none given by a grant elsewhere.
        let local = Side {
            namespace: "shop",
            ..SERVICE
        };
        assert!(permits(&[], ROUTE, local, "cart"));
        assert!(!permits(&[], ROUTE, SERVICE, "cart"));
    }

    #[test]
    fn a_grant_without_a_name_covers_the_kind_and_only_its_own_namespace() {
        let g = grant(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: { name: g, namespace: elsewhere }\nspec:\n  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop }]\n  to: [{ group: '', kind: Service }]\n",
        );
        let grants = [g];
        assert!(
            !permits(&grants, ROUTE, SERVICE, "cart"),
            "a grant speaks for its own namespace"
        );
        let there = Side {
            namespace: "elsewhere",
            ..SERVICE
        };
        assert!(permits(&grants, ROUTE, there, "anything"));
    }
}
