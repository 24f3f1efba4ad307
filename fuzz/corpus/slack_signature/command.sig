1767225600
v0=7cb2a01e7263254a979f670f9023f5e05bd0a93f7d6f7369f7cd89f02dd9c7af
token=legacy&team_id=T0001&team_domain=acme&channel_id=C0001&channel_name=deploys&user_id=UJAKE&user_name=someone&command=%2Fsustainbot&text=runs&api_app_id=A0001&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fresponse%2Fr&trigger_id=13345224609.738474920.8088930838d88f008e0