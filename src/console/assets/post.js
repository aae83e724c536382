// The console pages' one way to post JSON to the gateway: same-origin, the answer's JSON back,
// and the console's error sentence (or its status) as the thrown error.
export async function postJson(path, body, headers = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `the console answered ${response.status}`);
  return answer;
}
