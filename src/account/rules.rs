//! Who may change what: the seed rules (MessageFlow, Beefree, 1send) as functions of the actor,
//! the target and the current state. Each refusal names its rule, and the HTTP layer shows the
//! name, so a refusal is never a bare "no".
//!
//! The principle behind the table: strengthening protection is open to everyone who may manage
//! users; weakening it is the owner's, except that a user may undo, for themselves, what they
//! turned on themselves while the account does not require 2FA; a partner never weakens.

use crate::account::policy::{Policy, PolicyChannel};
use crate::account::user::{Override, SetBy, User, UserId, UserRole};
use crate::account::Role;
use crate::phone::PhoneNumber;

/// Rule names, as they appear in refusals (`rule` and `detail`).
pub mod rule {
    pub const MEMBERS_CHANGE_ONLY_THEMSELVES: &str = "members-change-only-themselves";
    pub const MEMBERS_DO_NOT_MANAGE_USERS: &str = "members-do-not-manage-users";
    pub const MEMBERS_DO_NOT_CHANGE_THE_POLICY: &str = "members-do-not-change-the-policy";
    pub const ONLY_THE_OWNER_TURNS_2FA_OFF_FOR_OTHERS: &str =
        "only-the-owner-turns-2fa-off-for-others";
    pub const REQUIRED_BY_THE_ACCOUNT: &str = "2fa-required-by-the-account";
    pub const SET_BY_SOMEONE_ELSE: &str = "2fa-set-by-someone-else";
    pub const PARTNERS_NEVER_WEAKEN_PROTECTION: &str = "partners-never-weaken-protection";
    pub const ONLY_THE_OWNER_WEAKENS_THE_POLICY: &str = "only-the-owner-weakens-the-policy";
    pub const ONLY_THE_OWNER_ASSIGNS_THE_OWNER_ROLE: &str = "only-the-owner-assigns-the-owner-role";
    pub const ONLY_OWNERS_AND_ADMINS_CHANGE_ROLES: &str = "only-owners-and-admins-change-roles";
    pub const ONLY_THE_OWNER_DEMOTES_AN_ADMIN: &str = "only-the-owner-demotes-an-admin";
    pub const PARTNERS_NEVER_GRANT_ADMIN_RIGHTS: &str = "partners-never-grant-admin-rights";
    pub const PROTECTED_USERS_MANAGE_THEIR_OWN_AUTHENTICATORS: &str =
        "protected-users-manage-their-own-authenticators";
    pub const SMS_NEEDS_EVERY_USER_TO_HAVE_A_PHONE: &str = "sms-needs-every-user-to-have-a-phone";
    pub const A_PHONE_IS_REQUIRED_WHILE_SMS_IS_ACTIVE: &str =
        "a-phone-is-required-while-sms-is-active";
    pub const SMS_FALLBACK_NEEDS_SMS_AND_AN_APP_OR_KEY: &str =
        "sms-fallback-needs-sms-and-an-app-or-key";
    pub const A_POLICY_ALLOWS_A_CHANNEL: &str = "a-policy-allows-at-least-one-channel";
    /// A workflow (a send's `channels`, or the policy's default) uses allowed channels only.
    pub const WORKFLOW_CHANNELS_ARE_ALLOWED: &str = "workflow-channels-allowed-by-policy";
    pub const TRUSTED_DEVICES_ARE_OFF: &str = "trusted-devices-are-off";
    pub const PROOF_MUST_BE_A_FRESH_APPROVAL_OF_THIS_USER: &str =
        "proof-must-be-a-fresh-approval-of-this-user";
    pub const A_PROOF_TRUSTS_ONE_DEVICE: &str = "a-proof-trusts-one-device";
}

/// A refusal by a named rule; `users` lists the users concerned where the rule is about them
/// (the missing phones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub detail: String,
    pub users: Vec<UserId>,
}

impl Refusal {
    pub fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
            users: Vec::new(),
        }
    }
}

/// Whose rules apply: the key's role, lowered to the acting user's role when a key acts on a
/// user's behalf (privileges are the intersection: an owner key forwarding a member's request
/// acts as that member; an admin key never acts as the owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Owner,
    Admin,
    Member,
    Partner,
    /// A login service: revokes devices and asks for decisions; never changes people or policy.
    Service,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Owner => "owner",
            ActorKind::Admin => "admin",
            ActorKind::Member => "member",
            ActorKind::Partner => "partner",
            ActorKind::Service => "service",
        }
    }
}

/// Who asks: the key (its id for the audit trail), its role, and the user it acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key_id: String,
    pub key_role: Role,
    pub acting_user: Option<UserId>,
    pub kind: ActorKind,
}

impl Actor {
    /// `acting_role` is the acting user's role, looked up by the caller.
    pub fn new(key_id: String, key_role: Role, acting: Option<(UserId, UserRole)>) -> Self {
        let key_level = match key_role {
            Role::Owner => Some(UserRole::Owner),
            Role::Admin => Some(UserRole::Admin),
            Role::Service | Role::Partner => None,
        };
        let kind = match (key_role, key_level) {
            (Role::Partner, _) => ActorKind::Partner,
            (Role::Service, _) => ActorKind::Service,
            (_, Some(level)) => {
                let level = match &acting {
                    Some((_, role)) => level.min(*role),
                    None => level,
                };
                match level {
                    UserRole::Owner => ActorKind::Owner,
                    UserRole::Admin => ActorKind::Admin,
                    UserRole::Member => ActorKind::Member,
                }
            }
            (_, None) => ActorKind::Service,
        };
        Self {
            key_id,
            key_role,
            acting_user: acting.map(|(id, _)| id),
            kind,
        }
    }

    pub fn is(&self, user: &UserId) -> bool {
        self.acting_user.as_ref() == Some(user)
    }

    fn set_by(&self, target: &UserId) -> SetBy {
        match self.kind {
            ActorKind::Owner => SetBy::Owner,
            ActorKind::Partner | ActorKind::Service => SetBy::Partner,
            ActorKind::Admin | ActorKind::Member if self.is(target) => SetBy::User(target.clone()),
            ActorKind::Admin | ActorKind::Member => SetBy::Admin,
        }
    }
}

/// What a request asks for a user's 2FA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorRequest {
    On,
    Off,
    /// Drop the override: follow the account's `require_2fa`.
    Account,
}

impl TwoFactorRequest {
    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "on" => Some(Self::On),
            "off" => Some(Self::Off),
            "account" => Some(Self::Account),
            _ => None,
        }
    }
}

/// The override a user ends up with when `actor` asks for `request`, or the rule that refuses.
pub fn two_factor_change(
    actor: &Actor,
    target: &UserId,
    before: &Option<Override>,
    request: TwoFactorRequest,
    account_requires: bool,
) -> Result<Option<Override>, Refusal> {
    let is_self = actor.is(target);
    let set_by = actor.set_by(target);
    if actor.kind == ActorKind::Owner {
        // Beefree: the owner may turn 2FA on or off per user, whatever the account requires.
        return Ok(match request {
            TwoFactorRequest::On => Some(Override {
                enabled: true,
                set_by,
            }),
            TwoFactorRequest::Off => Some(Override {
                enabled: false,
                set_by,
            }),
            TwoFactorRequest::Account => None,
        });
    }
    if actor.kind == ActorKind::Member && !is_self {
        return Err(Refusal::new(
            rule::MEMBERS_CHANGE_ONLY_THEMSELVES,
            "a member may change only their own 2FA",
        ));
    }
    // Asking for what already holds changes nothing, and keeps who set it.
    match (request, before) {
        (TwoFactorRequest::On, Some(Override { enabled: true, .. }))
        | (TwoFactorRequest::Off, Some(Override { enabled: false, .. })) => {
            return Ok(before.clone())
        }
        _ => {}
    }
    let partner = matches!(actor.kind, ActorKind::Partner | ActorKind::Service);
    if request == TwoFactorRequest::Off {
        weakening(
            partner,
            is_self,
            [
                "a partner may never turn 2FA off",
                "only the account owner may turn 2FA off for another user",
            ],
        )?;
        if account_requires {
            return Err(Refusal::new(
                rule::REQUIRED_BY_THE_ACCOUNT,
                "the account requires 2FA; only the account owner can turn it off for a user",
            ));
        }
    }
    // Below the owner nobody creates an exemption: "off" means "as the account says", which is
    // off here because the account does not require 2FA.
    let after = match request {
        TwoFactorRequest::On => Some(Override {
            enabled: true,
            set_by,
        }),
        TwoFactorRequest::Off | TwoFactorRequest::Account => None,
    };
    if User::protection_floor(&after) < User::protection_floor(before) {
        weakening(
            partner,
            is_self,
            [
                "a partner may never lower a user's 2FA",
                "only the account owner may lower another user's 2FA",
            ],
        )?;
        let own = matches!(before, Some(Override { set_by: SetBy::User(id), .. }) if id == target);
        if !own {
            return Err(Refusal::new(
                rule::SET_BY_SOMEONE_ELSE,
                "2FA was turned on for this user by someone else; only the account owner can turn it off",
            ));
        }
    }
    Ok(after)
}

/// Below the owner, only the user themself weakens their 2FA, and a partner never does:
/// `words` are the refusals for a partner and for anyone else.
fn weakening(
    partner: bool,
    is_self: bool,
    [for_partner, for_others]: [&str; 2],
) -> Result<(), Refusal> {
    if partner {
        return Err(Refusal::new(
            rule::PARTNERS_NEVER_WEAKEN_PROTECTION,
            for_partner,
        ));
    }
    if !is_self {
        return Err(Refusal::new(
            rule::ONLY_THE_OWNER_TURNS_2FA_OFF_FOR_OTHERS,
            for_others,
        ));
    }
    Ok(())
}

/// Checks a new policy: its own consistency, then whether this actor may make the change.
pub fn policy_change(actor: &Actor, before: &Policy, after: &Policy) -> Result<(), Refusal> {
    if after.channels.is_empty() {
        return Err(Refusal::new(
            rule::A_POLICY_ALLOWS_A_CHANNEL,
            "channels must name at least one of sms, whatsapp, totp, webauthn",
        ));
    }
    let has_app_or_key = after.channels.contains(PolicyChannel::Totp)
        || after.channels.contains(PolicyChannel::Webauthn);
    if after.sms_fallback && !(after.sms_active() && has_app_or_key) {
        return Err(Refusal::new(
            rule::SMS_FALLBACK_NEEDS_SMS_AND_AN_APP_OR_KEY,
            "sms_fallback makes SMS the alternative of an app or a key: allow sms and totp or webauthn",
        ));
    }
    if let Some(workflow) = &after.workflow {
        if let Some(channel) = workflow
            .channels
            .iter()
            .find(|channel| !after.channels.contains(**channel))
        {
            return Err(Refusal::new(
                rule::WORKFLOW_CHANNELS_ARE_ALLOWED,
                format!(
                    "the default workflow uses {}, which channels does not allow",
                    channel.as_str()
                ),
            ));
        }
    }
    let weakenings = before.weakenings(after);
    if before.abuse != after.abuse && matches!(actor.kind, ActorKind::Partner | ActorKind::Service)
    {
        // Telling a stricter abuse policy from a weaker one would take a rule per member; a
        // partner acts for a client and never takes protection off, so it changes none of it.
        return Err(Refusal::new(
            rule::PARTNERS_NEVER_WEAKEN_PROTECTION,
            "a partner may not change the account's abuse protection (owners and admins do)",
        ));
    }
    match actor.kind {
        ActorKind::Owner => Ok(()),
        ActorKind::Member => Err(Refusal::new(
            rule::MEMBERS_DO_NOT_CHANGE_THE_POLICY,
            "only the owner and admins change the account's policy",
        )),
        _ if weakenings.is_empty() => Ok(()),
        ActorKind::Admin => Err(Refusal::new(
            rule::ONLY_THE_OWNER_WEAKENS_THE_POLICY,
            format!(
                "only the account owner may weaken the policy ({})",
                weakenings.join(", ")
            ),
        )),
        ActorKind::Partner | ActorKind::Service => Err(Refusal::new(
            rule::PARTNERS_NEVER_WEAKEN_PROTECTION,
            format!(
                "a partner may never weaken the policy ({})",
                weakenings.join(", ")
            ),
        )),
    }
}

/// Checks a user about to be added; returns the override they start with.
pub fn new_user(
    actor: &Actor,
    id: &UserId,
    role: UserRole,
    phone: Option<&PhoneNumber>,
    two_factor: Option<TwoFactorRequest>,
    policy: &Policy,
) -> Result<Option<Override>, Refusal> {
    if actor.kind == ActorKind::Member {
        return Err(Refusal::new(
            rule::MEMBERS_DO_NOT_MANAGE_USERS,
            "a member may not add users",
        ));
    }
    if role > UserRole::Member && matches!(actor.kind, ActorKind::Partner | ActorKind::Service) {
        return Err(partners_never_grant_admin_rights());
    }
    if role == UserRole::Owner && actor.kind != ActorKind::Owner {
        return Err(Refusal::new(
            rule::ONLY_THE_OWNER_ASSIGNS_THE_OWNER_ROLE,
            "only the account owner may add a user with the owner role",
        ));
    }
    if phone.is_none() && policy.sms_active() {
        return Err(Refusal::new(
            rule::A_PHONE_IS_REQUIRED_WHILE_SMS_IS_ACTIVE,
            "SMS is an active 2FA channel of this account: a new user needs a phone number",
        ));
    }
    match two_factor {
        // Beefree: while the account requires 2FA, a new user has it on by default.
        None => Ok(None),
        Some(request) => two_factor_change(actor, id, &None, request, policy.require_2fa),
    }
}

pub fn phone_change(
    actor: &Actor,
    target: &User,
    phone: Option<&PhoneNumber>,
    policy: &Policy,
) -> Result<(), Refusal> {
    rebinding(
        actor,
        target,
        RebindRefusals {
            partner: "a partner may not change a phone number: it binds a new authenticator",
            member: "a member may change only their own phone number",
            protected: "only the user themself or the account owner may change the phone number of an owner or an admin",
        },
    )?;
    if phone.is_none() && policy.sms_active() {
        return Err(Refusal::new(
            rule::A_PHONE_IS_REQUIRED_WHILE_SMS_IS_ACTIVE,
            "SMS is an active 2FA channel of this account: a user cannot be left without a phone number",
        ));
    }
    Ok(())
}

pub fn role_change(actor: &Actor, target: &User, role: UserRole) -> Result<(), Refusal> {
    match actor.kind {
        ActorKind::Owner => Ok(()),
        ActorKind::Admin if target.role == UserRole::Owner || role == UserRole::Owner => {
            Err(Refusal::new(
                rule::ONLY_THE_OWNER_ASSIGNS_THE_OWNER_ROLE,
                "only the account owner may give or take the owner role",
            ))
        }
        // Demoting another admin would strip the protection of the rule below, one step
        // before changing their phone: an admin steps down only themself.
        ActorKind::Admin if target.role == UserRole::Admin && !actor.is(&target.id) => {
            Err(Refusal::new(
                rule::ONLY_THE_OWNER_DEMOTES_AN_ADMIN,
                "only the account owner may take the admin role from another admin",
            ))
        }
        ActorKind::Admin => Ok(()),
        ActorKind::Partner | ActorKind::Service if role > UserRole::Member => {
            Err(partners_never_grant_admin_rights())
        }
        _ => Err(Refusal::new(
            rule::ONLY_OWNERS_AND_ADMINS_CHANGE_ROLES,
            "only the account owner and admins change roles",
        )),
    }
}

fn partners_never_grant_admin_rights() -> Refusal {
    Refusal::new(
        rule::PARTNERS_NEVER_GRANT_ADMIN_RIGHTS,
        "a partner acts for the client and may add members only; it never gives the admin or owner role",
    )
}

/// The words of `rebinding`'s three refusals, for one kind of change.
struct RebindRefusals {
    partner: &'static str,
    member: &'static str,
    protected: &'static str,
}

/// Whether `actor` may bind or unbind an authenticator (phone, factor) of `target`. Binding an
/// authenticator is the subscriber's act (NIST SP 800-63B 6.1): for an owner or an admin only
/// they themself or the account's owner may do it, so that an admin cannot redirect the
/// owner's or another admin's login codes to a phone or app they hold. Admins still manage
/// members' authenticators.
fn rebinding(actor: &Actor, target: &User, refusals: RebindRefusals) -> Result<(), Refusal> {
    let protected =
        actor.kind != ActorKind::Owner && target.role != UserRole::Member && !actor.is(&target.id);
    match actor.kind {
        ActorKind::Partner | ActorKind::Service => Err(Refusal::new(
            rule::PARTNERS_NEVER_WEAKEN_PROTECTION,
            refusals.partner,
        )),
        ActorKind::Member if !actor.is(&target.id) => Err(Refusal::new(
            rule::MEMBERS_CHANGE_ONLY_THEMSELVES,
            refusals.member,
        )),
        _ if protected => Err(Refusal::new(
            rule::PROTECTED_USERS_MANAGE_THEIR_OWN_AUTHENTICATORS,
            refusals.protected,
        )),
        _ => Ok(()),
    }
}

pub fn factor_removal(actor: &Actor, target: &User) -> Result<(), Refusal> {
    rebinding(
        actor,
        target,
        RebindRefusals {
            partner: "a partner may not remove a user's factor",
            member: "a member may remove only their own factors",
            protected: "only the user themself or the account owner may remove a factor of an owner or an admin",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn actor(role: Role, acting: Option<(&str, UserRole)>) -> Actor {
        Actor::new(
            "KY1".into(),
            role,
            acting.map(|(name, role)| (id(name), role)),
        )
    }

    #[test]
    fn an_acting_user_lowers_the_key_role_and_never_raises_it() {
        assert_eq!(actor(Role::Owner, None).kind, ActorKind::Owner);
        assert_eq!(
            actor(Role::Owner, Some(("m", UserRole::Member))).kind,
            ActorKind::Member
        );
        assert_eq!(
            actor(Role::Admin, Some(("o", UserRole::Owner))).kind,
            ActorKind::Admin
        );
        assert_eq!(
            actor(Role::Partner, Some(("o", UserRole::Owner))).kind,
            ActorKind::Partner
        );
    }

    #[test]
    fn turning_on_what_someone_else_set_keeps_their_name() {
        let before = Some(Override {
            enabled: true,
            set_by: SetBy::Owner,
        });
        let admin = actor(Role::Admin, Some(("a", UserRole::Admin)));
        let after =
            two_factor_change(&admin, &id("a"), &before, TwoFactorRequest::On, false).unwrap();
        assert_eq!(after, before);
        let refused =
            two_factor_change(&admin, &id("a"), &before, TwoFactorRequest::Off, false).unwrap_err();
        assert_eq!(refused.rule, rule::SET_BY_SOMEONE_ELSE);
    }

    fn person(name: &str, role: UserRole) -> User {
        User::fixture(id(name), role)
    }

    /// Both rebinding calls (phone change, factor removal) give the same answer.
    fn rebinding(actor: &Actor, target: &User) -> Result<(), &'static str> {
        let phone = PhoneNumber::parse("+4915112340999").unwrap();
        let policy = Policy::default_for_new_accounts();
        let by_phone = phone_change(actor, target, Some(&phone), &policy).map_err(|r| r.rule);
        let by_factor = factor_removal(actor, target).map_err(|r| r.rule);
        assert_eq!(by_phone, by_factor, "phone and factor agree for {actor:?}");
        by_phone
    }

    #[test]
    fn only_the_user_or_the_owner_rebinds_an_owners_or_an_admins_authenticators() {
        let owner = person("olga", UserRole::Owner);
        let admin = person("adam", UserRole::Admin);
        let other_admin = person("ada", UserRole::Admin);
        let member = person("mel", UserRole::Member);
        let as_admin = actor(Role::Admin, Some(("adam", UserRole::Admin)));
        let admin_key = actor(Role::Admin, None);
        let as_owner = actor(Role::Owner, None);
        let refused = Err(rule::PROTECTED_USERS_MANAGE_THEIR_OWN_AUTHENTICATORS);
        assert_eq!(rebinding(&as_admin, &owner), refused, "admin on the owner");
        assert_eq!(
            rebinding(&as_admin, &other_admin),
            refused,
            "admin on an admin"
        );
        assert_eq!(
            rebinding(&admin_key, &admin),
            refused,
            "an admin key on an admin"
        );
        assert_eq!(rebinding(&as_admin, &member), Ok(()), "admin on a member");
        assert_eq!(
            rebinding(&admin_key, &member),
            Ok(()),
            "admin key on a member"
        );
        assert_eq!(rebinding(&as_admin, &admin), Ok(()), "an admin on themself");
        assert_eq!(
            rebinding(&as_owner, &admin),
            Ok(()),
            "the owner on an admin"
        );
        assert_eq!(
            rebinding(&as_owner, &owner),
            Ok(()),
            "the owner on an owner"
        );
        let owner_for_admin = actor(Role::Owner, Some(("ada", UserRole::Admin)));
        assert_eq!(
            rebinding(&owner_for_admin, &owner),
            refused,
            "an owner key acting for an admin acts as that admin"
        );
    }

    #[test]
    fn an_admin_demotes_only_themself_and_a_partner_grants_no_admin_role() {
        let admin = person("adam", UserRole::Admin);
        let other_admin = person("ada", UserRole::Admin);
        let member = person("mel", UserRole::Member);
        let as_admin = actor(Role::Admin, Some(("adam", UserRole::Admin)));
        assert_eq!(
            role_change(&as_admin, &other_admin, UserRole::Member).map_err(|r| r.rule),
            Err(rule::ONLY_THE_OWNER_DEMOTES_AN_ADMIN)
        );
        assert_eq!(role_change(&as_admin, &admin, UserRole::Member), Ok(()));
        assert_eq!(role_change(&as_admin, &member, UserRole::Admin), Ok(()));
        assert_eq!(
            role_change(&actor(Role::Owner, None), &other_admin, UserRole::Member),
            Ok(())
        );
        let partner = actor(Role::Partner, None);
        for role in [UserRole::Admin, UserRole::Owner] {
            assert_eq!(
                role_change(&partner, &member, role).map_err(|r| r.rule),
                Err(rule::PARTNERS_NEVER_GRANT_ADMIN_RIGHTS)
            );
            let policy = Policy::default_for_new_accounts();
            let phone = PhoneNumber::parse("+4915112340998").unwrap();
            assert_eq!(
                new_user(&partner, &id("new"), role, Some(&phone), None, &policy)
                    .map_err(|r| r.rule),
                Err(rule::PARTNERS_NEVER_GRANT_ADMIN_RIGHTS)
            );
            assert!(new_user(
                &partner,
                &id("new"),
                UserRole::Member,
                Some(&phone),
                None,
                &policy
            )
            .is_ok());
        }
    }
}
