//! Accounts and their API keys (`Accounts`): what is written reads back whole, a key is found by
//! its digest only, what was never written reads as nothing, and accounts list by id in pages.

use otpgate::account::{key_digest, mint_key, Account, AccountId, Role};
use otpgate::clock::Clock;

use crate::on_every_store;
use crate::stores::{stores, Backend};

async fn an_account_reads_back_as_it_was_written(backend: Backend) {
    let stores = stores(backend).await;
    let account = Account {
        id: stores.account.clone(),
        name: "Shop & Co, Zürich".into(),
        created_ms: stores.clock.now_ms(),
        code_length: 8,
    };
    let records = &stores.accounts;
    assert_eq!(records.get_account(&account.id).await.unwrap(), None);
    records.insert_account(&account).await.unwrap();
    assert_eq!(
        records.get_account(&account.id).await.unwrap(),
        Some(account)
    );
    let stranger = AccountId::random(&stores.rng).unwrap();
    assert_eq!(records.get_account(&stranger).await.unwrap(), None);
}

async fn a_key_is_found_by_its_digest_with_its_account_and_role(backend: Backend) {
    let stores = stores(backend).await;
    let records = &stores.accounts;
    let now = stores.clock.now_ms();
    let owner = mint_key(&stores.rng, &stores.account, Role::Owner, now).unwrap();
    let partner = mint_key(&stores.rng, &stores.account, Role::Partner, now + 1).unwrap();
    for minted in [&owner, &partner] {
        let digest = key_digest(&minted.secret);
        assert_eq!(records.find_api_key(&digest).await.unwrap(), None);
        records.insert_api_key(&minted.record).await.unwrap();
    }
    for minted in [&owner, &partner] {
        let found = records.find_api_key(&key_digest(&minted.secret)).await;
        assert_eq!(found.unwrap().as_ref(), Some(&minted.record));
    }
    let unknown = key_digest("ogk_never-minted");
    assert_eq!(records.find_api_key(&unknown).await.unwrap(), None);
}

async fn accounts_are_listed_by_id_a_page_at_a_time(backend: Backend) {
    let stores = stores(backend).await;
    let records = &stores.accounts;
    let mut ids = Vec::new();
    for n in 0..5u64 {
        let account = Account {
            id: AccountId::random(&stores.rng).unwrap(),
            name: format!("Shop {n}"),
            created_ms: stores.clock.now_ms() + n,
            code_length: 6,
        };
        records.insert_account(&account).await.unwrap();
        ids.push(account.id);
    }
    ids.sort();
    let every = records.list_accounts(None, 100).await.unwrap();
    let listed: Vec<AccountId> = every.iter().map(|a| a.id.clone()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "in the order of their ids");
    let ours: Vec<AccountId> = listed.into_iter().filter(|id| ids.contains(id)).collect();
    assert_eq!(ours, ids, "each account once");
    assert!(every.iter().any(|a| a.name == "Shop 3"), "whole records");

    let first = records.list_accounts(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let next = records
        .list_accounts(Some(&first[1].id), 100)
        .await
        .unwrap();
    assert!(next.iter().all(|a| a.id > first[1].id), "strictly after");
    assert_eq!(
        first.len() + next.len(),
        every.len(),
        "pages cover the list"
    );
}

on_every_store!(
    accounts_are_listed_by_id_a_page_at_a_time,
    an_account_reads_back_as_it_was_written,
    a_key_is_found_by_its_digest_with_its_account_and_role,
);
