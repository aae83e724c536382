// My security: security keys and passkeys (filled in with the page).
