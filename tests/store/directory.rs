//! The directory: policies and users written on the versions they were decided on, trusted
//! devices bounded per user and per account, the audit trail.

use otpgate::account::audit::{AuditEntry, Who};
use otpgate::account::policy::{ChannelSet, Policy, PolicyChannel};
use otpgate::account::store::{
    DeviceRevocation, NewDevice, PolicyWrite, TrustOutcome, UserWrite, UserWriteOutcome,
};
use otpgate::account::trust::{DeviceId, DeviceRecord};
use otpgate::account::user::{User, UserId, UserRole};
use otpgate::clock::Clock;
use otpgate::destination::EmailAddress;

use crate::on_every_store;
use crate::stores::{stores, Backend, Stores};

fn entry(stores: &Stores, action: &str) -> AuditEntry {
    AuditEntry::new(
        stores.clock.now_ms(),
        Who::root(),
        action,
        "target".into(),
        serde_json::json!({"why": "a test"}),
    )
}

fn user(stores: &Stores, name: &str) -> User {
    let now = stores.clock.now_ms();
    User {
        id: UserId::parse(name).unwrap(),
        role: UserRole::Member,
        phone: None,
        email: None,
        two_factor: None,
        factors: Vec::new(),
        device_epoch: 0,
        version: 0,
        created_ms: now,
        updated_ms: now,
    }
}

fn create(stores: &Stores, user: User, max_users: u64) -> UserWrite {
    UserWrite {
        user,
        create: true,
        policy_version: 0,
        revoke_devices: false,
        audit: vec![entry(stores, "user.create")],
        max_users,
    }
}

fn device(stores: &Stores, user: &str, proof: &str, byte: u8, max_account: u64) -> NewDevice {
    let now = stores.clock.now_ms();
    NewDevice {
        digest: [byte; 32],
        record: DeviceRecord {
            id: DeviceId::random(&stores.rng).unwrap(),
            user: UserId::parse(user).unwrap(),
            created_ms: now,
            expires_ms: now + 86_400_000,
            epoch: 0,
        },
        proof: proof.into(),
        proof_ttl_ms: 600_000,
        max_devices: 5,
        max_account_devices: max_account,
        audit: entry(stores, "device.trust"),
    }
}

async fn trust(stores: &Stores, device: &NewDevice) -> TrustOutcome {
    let account = &stores.account;
    stores
        .directory
        .trust_device(account, device)
        .await
        .unwrap()
}

async fn write_user(stores: &Stores, write: &UserWrite) -> UserWriteOutcome {
    let account = &stores.account;
    stores.directory.write_user(account, write).await.unwrap()
}

async fn a_policy_write_decided_on_an_old_version_is_stale(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    let policy = stores.directory.policy(account).await.unwrap();
    assert_eq!(
        policy.version, 0,
        "the defaults until the account writes one"
    );
    let mut change = Policy {
        require_2fa: !policy.require_2fa,
        ..policy
    };
    change.version = 0;
    let audit = entry(&stores, "policy.write");
    // The same write twice: decided on version 0, the second finds version 1.
    for expected in [PolicyWrite::Written { version: 1 }, PolicyWrite::Stale] {
        let written = stores.directory.write_policy(account, &change, &audit);
        assert_eq!(written.await.unwrap(), expected);
    }
    let read = stores.directory.policy(account).await.unwrap();
    assert_eq!((read.require_2fa, read.version), (change.require_2fa, 1));
}

async fn users_are_created_once_updated_on_their_version_and_bounded(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    let write = create(&stores, user(&stores, "alice"), 2);
    assert_eq!(
        write_user(&stores, &write).await,
        UserWriteOutcome::Written {
            version: 1,
            device_epoch: 0
        }
    );
    assert_eq!(write_user(&stores, &write).await, UserWriteOutcome::Exists);
    let mut update = UserWrite {
        create: false,
        ..write.clone()
    };
    update.user.role = UserRole::Admin;
    // Decided on version 0, but the user is at 1.
    assert_eq!(write_user(&stores, &update).await, UserWriteOutcome::Stale);
    update.user.version = 1;
    assert_eq!(
        write_user(&stores, &update).await,
        UserWriteOutcome::Written {
            version: 2,
            device_epoch: 0
        }
    );
    let read = stores
        .directory
        .user(account, &UserId::parse("alice").unwrap())
        .await
        .unwrap()
        .expect("alice exists");
    assert_eq!((read.role, read.version), (UserRole::Admin, 2));

    let bob = create(&stores, user(&stores, "bob"), 2);
    assert!(matches!(
        write_user(&stores, &bob).await,
        UserWriteOutcome::Written { .. }
    ));
    let carol = create(&stores, user(&stores, "carol"), 2);
    assert_eq!(
        write_user(&stores, &carol).await,
        UserWriteOutcome::TooManyUsers { max: 2 }
    );
}

async fn a_proof_trusts_one_device_and_the_account_bound_holds(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    let nobody = device(&stores, "alice", "VE-proof-0", 1, 2);
    assert_eq!(trust(&stores, &nobody).await, TrustOutcome::NoSuchUser);
    let write = create(&stores, user(&stores, "alice"), 10);
    write_user(&stores, &write).await;
    let first = device(&stores, "alice", "VE-proof-1", 1, 2);
    assert_eq!(
        trust(&stores, &first).await,
        TrustOutcome::Trusted { epoch: 0 }
    );
    let spent = device(&stores, "alice", "VE-proof-1", 2, 2);
    assert_eq!(trust(&stores, &spent).await, TrustOutcome::ProofUsed);
    let second = device(&stores, "alice", "VE-proof-2", 2, 2);
    assert!(matches!(
        trust(&stores, &second).await,
        TrustOutcome::Trusted { .. }
    ));
    let third = device(&stores, "alice", "VE-proof-3", 3, 2);
    assert_eq!(
        trust(&stores, &third).await,
        TrustOutcome::TooManyDevices { max: 2 }
    );
    let found = stores
        .directory
        .device(account, &[1; 32])
        .await
        .unwrap()
        .expect("the first device");
    assert_eq!(found.id, first.record.id);

    // Revoking every device bumps the epoch and forgets them; the bound has room again.
    let alice = UserId::parse("alice").unwrap();
    let revoked = stores
        .directory
        .revoke_devices(account, &alice, &entry(&stores, "device.revoke_all"))
        .await
        .unwrap();
    assert_eq!(revoked, Some(2));
    assert_eq!(
        stores.directory.device(account, &[1; 32]).await.unwrap(),
        None
    );
    assert_eq!(
        trust(&stores, &third).await,
        TrustOutcome::Trusted { epoch: 1 }
    );
    let one = stores
        .directory
        .revoke_device(
            account,
            &DeviceRevocation {
                user: &alice,
                device: &third.record.id,
                audit: &entry(&stores, "device.revoke"),
            },
        )
        .await
        .unwrap();
    assert_eq!(one, Some([3; 32]));
}

async fn the_audit_trail_reads_newest_first_in_pages(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    for action in ["first", "second", "third"] {
        stores
            .directory
            .append_audit(account, &entry(&stores, action))
            .await
            .unwrap();
    }
    let page = stores.directory.audit(account, None, 2).await.unwrap();
    let actions: Vec<&str> = page.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(actions, ["third", "second"]);
    let rest = stores
        .directory
        .audit(account, Some(&page[1].id), 2)
        .await
        .unwrap();
    let actions: Vec<&str> = rest.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(actions, ["first"]);
}

async fn enabling_email_lists_the_users_without_an_address(backend: Backend) {
    let stores = stores(backend).await;
    let account = &stores.account;
    let mut with = user(&stores, "anna");
    with.email = Some(EmailAddress::parse("anna@example.com").unwrap());
    for user in [with, user(&stores, "bob"), user(&stores, "carl")] {
        let written = write_user(&stores, &create(&stores, user, 10)).await;
        assert!(
            matches!(written, UserWriteOutcome::Written { .. }),
            "{written:?}"
        );
    }
    let anna_id = UserId::parse("anna").unwrap();
    let read = stores.directory.user(account, &anna_id);
    let anna = read.await.unwrap().expect("anna is stored");
    assert_eq!(
        anna.email.as_ref().map(EmailAddress::as_str),
        Some("anna@example.com")
    );

    let policy = stores.directory.policy(account).await.unwrap();
    let mut with_email = policy.clone();
    with_email.channels = ChannelSet::of(&[PolicyChannel::Email, PolicyChannel::Totp]);
    let audit = entry(&stores, "policy.write");
    let refused = stores.directory.write_policy(account, &with_email, &audit);
    assert_eq!(
        refused.await.unwrap(),
        PolicyWrite::MissingEmails {
            count: 2,
            users: vec![
                UserId::parse("bob").unwrap(),
                UserId::parse("carl").unwrap()
            ],
        }
    );
    // Bob gets an address, Carl is given one too: the policy is written.
    for name in ["bob", "carl"] {
        let mut user = stores
            .directory
            .user(account, &UserId::parse(name).unwrap())
            .await
            .unwrap()
            .unwrap();
        user.email = Some(EmailAddress::parse(&format!("{name}@example.com")).unwrap());
        let write = UserWrite {
            create: false,
            ..create(&stores, user, 10)
        };
        assert!(matches!(
            write_user(&stores, &write).await,
            UserWriteOutcome::Written { .. }
        ));
    }
    let written = stores.directory.write_policy(account, &with_email, &audit);
    assert_eq!(written.await.unwrap(), PolicyWrite::Written { version: 1 });
}

on_every_store!(
    enabling_email_lists_the_users_without_an_address,
    a_policy_write_decided_on_an_old_version_is_stale,
    users_are_created_once_updated_on_their_version_and_bounded,
    a_proof_trusts_one_device_and_the_account_bound_holds,
    the_audit_trail_reads_newest_first_in_pages,
);
