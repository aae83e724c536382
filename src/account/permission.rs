//! Which key may do what: the one table of roles × actions. The v1 handlers, the Twilio and Graph
//! facades ask it through `http::auth`; nothing else lists roles for an action.
//!
//! The root key is not a role (it lives in config): a row says whether root may act, and what a
//! refused root or a refused role is told.

use crate::account::Role;

/// An action a caller may be allowed to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Create accounts (`POST /v1/accounts`, `POST /v2/Services`).
    CreateAccounts,
    /// Mint keys of an account: root, or an owner key of that same account.
    MintKeys,
    /// List and revoke keys of an account: root, or an owner key of that same account.
    ManageKeys,
    /// Set where an account's two-step links are e-mailed: redirecting them is the first step of
    /// taking the protection off, so only the operator may.
    SetAccountEmail,
    /// Send, check, read and cancel one-time codes.
    SendCodes,
    /// Read the account's 2FA policy.
    ReadPolicy,
    /// Change the policy; add, read, change people and remove their factors.
    ManagePeople,
    /// Trust devices, check them, ask for login decisions.
    RunLogins,
    /// Revoke trusted devices (any key may take trust away).
    RevokeDevices,
    /// Read the audit trail.
    ReadAudit,
    /// Read today's message counts, the caps and the blocks running (`GET /v1/usage`).
    ReadUsage,
    /// Enrol factors, confirm them, run challenges, regenerate recovery codes.
    UseFactors,
    /// Add phone numbers and read them.
    ManagePhoneNumbers,
    /// Set or change a number's two-step PIN.
    SetPins,
    /// Register a number (with its PIN while two-step is on).
    RegisterNumbers,
    /// Unlock a number locked by wrong PINs (by setting its PIN).
    UnlockNumbers,
    /// Reach the two-step link requests: every key may ask, so that a refused ask is recorded in
    /// the audit trail; `DisableTwoStep` and `ResetTwoStep` decide who is answered.
    AskTwoStepLinks,
    /// Be e-mailed a link that turns a number's two-step verification off.
    DisableTwoStep,
    /// Be e-mailed a link that resets a number's PIN.
    ResetTwoStep,
    /// Read a Twilio Service: root, or any key of its account.
    ReadServices,
    /// Register, read, test and remove the account's webhooks (events out).
    ManageWebhooks,
    /// Mint a console invitation for a user: the account's owner (for its users) or root (for
    /// anyone, and for the operator).
    InviteToConsole,
}

/// One row: the roles allowed, whether root is, and what a refused caller is told.
struct Row {
    permission: Permission,
    roles: &'static [Role],
    root: bool,
    /// Said to a key whose role is not in `roles`.
    refusal: &'static str,
    /// Said to the root key when `root` is false.
    root_refusal: &'static str,
}

const ALL: &[Role] = &[Role::Owner, Role::Admin, Role::Service, Role::Partner];
const ROOT_ONLY_MANAGES: &str = "the root key only manages accounts and their keys";
const ROOT_NOT_SUPPORT: &str = "the root key only manages accounts and their keys; support acts through the otpgate support command";
/// Who manages phone numbers: add them, set PINs, register them.
const NUMBER_MANAGERS: &[Role] = &[Role::Owner, Role::Admin, Role::Partner];
/// Who may unlock a number and ask for its disable or reset links.
const NUMBER_OWNERS: &[Role] = &[Role::Owner, Role::Admin];

/// The table. Owners and admins manage people and policy; login services (service keys) send
/// codes, run logins and factors; partners act for a client in both (the account rules refuse
/// them any weakening by name); admins do not run logins.
const TABLE: &[Row] = &[
    Row {
        permission: Permission::CreateAccounts,
        roles: &[],
        root: true,
        refusal: "only the root key creates accounts",
        root_refusal: "",
    },
    Row {
        permission: Permission::MintKeys,
        roles: &[Role::Owner],
        root: true,
        refusal: "only the root key or the account's owner mints keys",
        root_refusal: "",
    },
    Row {
        permission: Permission::ManageKeys,
        roles: &[Role::Owner],
        root: true,
        refusal: "only the root key or the account's owner lists and revokes keys",
        root_refusal: "",
    },
    Row {
        permission: Permission::SetAccountEmail,
        roles: &[],
        root: true,
        refusal: "only the root key sets an account's e-mail address",
        root_refusal: "",
    },
    Row {
        permission: Permission::SendCodes,
        roles: &[Role::Owner, Role::Service, Role::Partner],
        root: false,
        refusal: "only owner, service and partner keys may send and check codes",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::ReadPolicy,
        roles: ALL,
        root: false,
        refusal: "only owner, admin and partner keys manage policy and users",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::ManagePeople,
        roles: &[Role::Owner, Role::Admin, Role::Partner],
        root: false,
        refusal: "only owner, admin and partner keys manage policy and users",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::RunLogins,
        roles: &[Role::Owner, Role::Service, Role::Partner],
        root: false,
        refusal: "only owner, service and partner keys trust devices, check them and ask for login decisions",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::RevokeDevices,
        roles: ALL,
        root: false,
        refusal: "only owner, service and partner keys trust devices, check them and ask for login decisions",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::ReadAudit,
        roles: &[Role::Owner, Role::Admin, Role::Partner],
        root: false,
        refusal: "only owner, admin and partner keys read the audit trail",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::ReadUsage,
        roles: NUMBER_OWNERS,
        root: false,
        refusal: "only owner and admin keys read the account's usage",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::UseFactors,
        roles: &[Role::Owner, Role::Service, Role::Partner],
        root: false,
        refusal: "only owner, service and partner keys enrol factors and run challenges",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::ManagePhoneNumbers,
        roles: NUMBER_MANAGERS,
        root: false,
        refusal: "only owner, admin and partner keys manage phone numbers",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::SetPins,
        roles: NUMBER_MANAGERS,
        root: false,
        refusal: "only owner, admin and partner keys set two-step PINs",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::RegisterNumbers,
        roles: NUMBER_MANAGERS,
        root: false,
        refusal: "only owner, admin and partner keys register phone numbers",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::UnlockNumbers,
        roles: NUMBER_OWNERS,
        root: false,
        refusal: "only the number's owner or an account admin unlocks a locked number",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::AskTwoStepLinks,
        roles: ALL,
        root: false,
        refusal: "",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::DisableTwoStep,
        roles: NUMBER_OWNERS,
        root: false,
        refusal: "only the number's owner or an account admin may ask to turn two-step verification off; a partner never may",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::ResetTwoStep,
        roles: NUMBER_OWNERS,
        root: false,
        refusal: "only the number's owner or an account admin may ask for a PIN reset link",
        root_refusal: ROOT_NOT_SUPPORT,
    },
    Row {
        permission: Permission::ReadServices,
        roles: ALL,
        root: true,
        refusal: "",
        root_refusal: "",
    },
    Row {
        permission: Permission::ManageWebhooks,
        roles: NUMBER_OWNERS,
        root: false,
        refusal: "only owner and admin keys manage webhooks",
        root_refusal: ROOT_ONLY_MANAGES,
    },
    Row {
        permission: Permission::InviteToConsole,
        roles: &[Role::Owner],
        root: true,
        refusal: "only the root key or the account's owner invites people to the console",
        root_refusal: "",
    },
];

impl Permission {
    fn row(self) -> &'static Row {
        // Every variant has its row: `every_permission_has_one_row` holds it.
        TABLE
            .iter()
            .find(|row| row.permission == self)
            .unwrap_or(&TABLE[0])
    }

    /// Whether a key of `role` may take this action (within its own account).
    pub fn allows(self, role: Role) -> bool {
        self.row().roles.contains(&role)
    }

    /// Whether the root key may take this action.
    pub fn allows_root(self) -> bool {
        self.row().root
    }

    /// What a key whose role may not take this action is told.
    pub fn refusal(self) -> &'static str {
        self.row().refusal
    }

    /// What the root key is told when it may not take this action.
    pub fn root_refusal(self) -> &'static str {
        self.row().root_refusal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: [Permission; 22] = [
        Permission::CreateAccounts,
        Permission::MintKeys,
        Permission::ManageKeys,
        Permission::SetAccountEmail,
        Permission::SendCodes,
        Permission::ReadPolicy,
        Permission::ManagePeople,
        Permission::RunLogins,
        Permission::RevokeDevices,
        Permission::ReadAudit,
        Permission::ReadUsage,
        Permission::UseFactors,
        Permission::ManagePhoneNumbers,
        Permission::SetPins,
        Permission::RegisterNumbers,
        Permission::UnlockNumbers,
        Permission::AskTwoStepLinks,
        Permission::DisableTwoStep,
        Permission::ResetTwoStep,
        Permission::ReadServices,
        Permission::ManageWebhooks,
        Permission::InviteToConsole,
    ];

    #[test]
    fn every_permission_has_one_row() {
        for permission in EVERY {
            let rows = TABLE.iter().filter(|row| row.permission == permission);
            assert_eq!(rows.count(), 1, "{permission:?}");
        }
        assert_eq!(TABLE.len(), EVERY.len());
    }

    #[test]
    fn a_refused_caller_is_always_told_why() {
        for permission in EVERY {
            if permission.row().roles.len() < ALL.len() {
                assert!(!permission.refusal().is_empty(), "{permission:?}");
            }
            if !permission.allows_root() {
                assert!(!permission.root_refusal().is_empty(), "{permission:?}");
            }
        }
    }

    #[test]
    fn admins_manage_people_but_do_not_run_logins_and_services_the_reverse() {
        assert!(Permission::ManagePeople.allows(Role::Admin));
        assert!(!Permission::RunLogins.allows(Role::Admin));
        assert!(!Permission::SendCodes.allows(Role::Admin));
        assert!(Permission::RunLogins.allows(Role::Service));
        assert!(!Permission::ManagePeople.allows(Role::Service));
        assert!(!Permission::ReadAudit.allows(Role::Service));
        assert!(Permission::ReadUsage.allows(Role::Admin));
        assert!(!Permission::ReadUsage.allows(Role::Partner));
        assert!(Permission::MintKeys.allows_root() && !Permission::SendCodes.allows_root());
    }
}
