// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../../src/PoLChain.sol";
import {SignerQuorum} from "../../src/SignerQuorum.sol";
import {TestBase} from "./TestBase.sol";

/// @dev Keys, EIP-712 signing and the packing of submitBlockSigned's `signatures` argument, written from
/// docs/PROTOCOL.md §16 independently of the contract (pytest checks Python's packing against the same
/// vectors, tests/vectors/quorum.json).
abstract contract QuorumSigning is TestBase {
    uint256 internal constant SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant HALF_ORDER = SECP256K1_ORDER / 2;

    /// @dev The private key of every address this suite made (0 for an address it did not).
    mapping(address => uint256) internal keyOf;

    function makeKey(string memory label, uint256 i) internal returns (address a) {
        uint256 key = uint256(keccak256(abi.encode(label, i))) % (SECP256K1_ORDER - 1) + 1;
        a = vm.addr(key);
        keyOf[a] = key;
    }

    /// @dev `n` fresh members, strictly ascending.
    function makeMembers(string memory label, uint256 n) internal returns (address[] memory m) {
        m = new address[](n);
        for (uint256 i; i < n; ++i) m[i] = makeKey(label, i);
        sortAddresses(m);
    }

    function sortAddresses(address[] memory m) internal pure {
        for (uint256 i = 1; i < m.length; ++i) {
            address x = m[i];
            uint256 j = i;
            for (; j > 0 && m[j - 1] > x; --j) m[j] = m[j - 1];
            m[j] = x;
        }
    }

    /// @dev EIP-2098: r || (yParity << 255 | s).
    function compact(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    /// @dev `sig` with its s replaced by `highS` (parity kept). The twin of a low-s signature, n - s, almost
    /// never fits the compact form (its top bit is the parity bit), but any s above n/2 must be refused.
    function withS(bytes memory sig, uint256 highS) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 vs) = abi.decode(sig, (bytes32, bytes32));
        return abi.encodePacked(r, bytes32((highS & ((1 << 255) - 1)) | (uint256(vs) & (1 << 255))));
    }

    /// @dev The signer of a compact signature, as ecrecover sees it (0 when invalid).
    function recoverCompact(bytes32 digest, bytes memory sig) internal pure returns (address) {
        (bytes32 r, bytes32 vs) = abi.decode(sig, (bytes32, bytes32));
        return ecrecover(digest, uint8(27 + (uint256(vs) >> 255)), r, bytes32(uint256(vs) & ((1 << 255) - 1)));
    }

    /// @dev threshold || bitmap || per member: its signature if its bit is set, else its address.
    function pack(uint8 threshold, address[] memory members, uint256 mask, bytes[] memory sigs)
        internal
        pure
        returns (bytes memory out)
    {
        out = abi.encodePacked(threshold, uint32(mask));
        for (uint256 i; i < members.length; ++i) {
            out = (mask >> i) & 1 == 1 ? bytes.concat(out, sigs[i]) : bytes.concat(out, abi.encodePacked(members[i]));
        }
    }

    /// @dev Members in `mask` sign `digest`; the rest are listed.
    function signedBy(uint8 threshold, address[] memory members, uint256 mask, bytes32 digest)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = new bytes[](members.length);
        for (uint256 i; i < members.length; ++i) {
            if ((mask >> i) & 1 == 1) sigs[i] = compact(keyOf[members[i]], digest);
        }
        return pack(threshold, members, mask, sigs);
    }

    /// @dev A mask with the lowest `count` of `n` members, rotated by `shift`.
    function maskOf(uint256 n, uint256 count, uint256 shift) internal pure returns (uint256 mask) {
        for (uint256 i; i < count; ++i) mask |= 1 << ((i + shift % n) % n);
    }

    function popcount(uint256 x) internal pure returns (uint256 c) {
        for (; x != 0; x >>= 1) c += x & 1;
    }

    /// @dev The EIP-712 digest of SignerSetUpdate(signers, threshold, nonce) under `domainSeparator`, written
    /// out here (not through the contract) so that the tests also pin the encoding.
    function updateDigest(bytes32 domainSeparator, address[] memory signers, uint8 threshold, uint256 nonce)
        internal
        pure
        returns (bytes32)
    {
        bytes32 typehash = keccak256("SignerSetUpdate(address[] signers,uint8 threshold,uint256 nonce)");
        bytes32 structHash = keccak256(abi.encode(typehash, keccak256(abi.encodePacked(signers)), threshold, nonce));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator, structHash));
    }

    function blockDigest(bytes32 domainSeparator, bytes32 blockHash) internal pure returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(keccak256("Block(bytes32 blockHash)"), blockHash));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator, structHash));
    }

    function domainSeparator(uint256 chainId, address verifyingContract) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("PoLChain"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
    }
}
