/* The qtsp verbs. Each takes argv starting at the verb name and returns the
 * process exit status (0 ok, 1 failure, 2 usage). */
#ifndef QTSP_CMD_CMD_H
#define QTSP_CMD_CMD_H

int cmd_init(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_operator(int argc, char **argv);
int cmd_audit(int argc, char **argv);
/* status, hold, release, terminate, subject add, issue (cmd/ra_cmds.c) */
int cmd_ra(int argc, char **argv);
/* rekey ocsp|tsa (cmd/rekey.c) */
int cmd_rekey(int argc, char **argv);
/* token bench (cmd/token.c) */
int cmd_token(int argc, char **argv);
/* crl publish (cmd/crl_cmd.c) */
int cmd_crl(int argc, char **argv);

/* config check (cmd/config_cmd.c) */
int cmd_config(int argc, char **argv);

/* backup and restore of a home (cmd/backup.c) */
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);

/* signer reset USER_ID: new password and TOTP secret (cmd/signer_reset.c) */
int cmd_signer_reset(int argc, char **argv);

/* sign: CAdES / PAdES with a credential's key (cmd/sign_doc.c) */
int cmd_sign_doc(int argc, char **argv);

/* validate: the signature validation report of a file (cmd/validate_cmd.c) */
int cmd_validate(int argc, char **argv);

/* rp add|list|report, signer package|quota|history (cmd/usage_cmds.c) */
int cmd_rp(int argc, char **argv);
int cmd_signer(int argc, char **argv);

#endif
