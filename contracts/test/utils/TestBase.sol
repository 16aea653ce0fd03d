// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The subset of forge's cheatcodes these tests use; forge-std cannot be fetched offline.
interface Vm {
    function prank(address) external;
    function startPrank(address) external;
    function stopPrank() external;
    function warp(uint256) external;
    function prevrandao(bytes32) external;
    function assume(bool) external pure;
    function expectRevert(bytes calldata) external;
    function expectRevert(bytes4) external;
    function expectPartialRevert(bytes4) external;
    function expectEmit(bool, bool, bool, bool) external;
    function readFile(string calldata) external view returns (string memory);
    function projectRoot() external view returns (string memory);
    function parseJsonUint(string calldata, string calldata) external pure returns (uint256);
    function parseJsonUintArray(string calldata, string calldata) external pure returns (uint256[] memory);
    function parseJsonBytes32(string calldata, string calldata) external pure returns (bytes32);
    function parseJsonBytes(string calldata, string calldata) external pure returns (bytes memory);
    function parseJsonAddress(string calldata, string calldata) external pure returns (address);
    function toString(uint256) external pure returns (string memory);
    function snapshotGasLastCall(string calldata) external returns (uint256);
}

/// @dev Assertions revert with a message, which fails the test in forge.
abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    error AssertionFailed(string what, uint256 left, uint256 right);
    error AssertionFailedBytes32(string what, bytes32 left, bytes32 right);

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert AssertionFailed(what, a, b);
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) revert AssertionFailedBytes32(what, a, b);
    }

    function assertEq(bytes memory a, bytes memory b, string memory what) internal pure {
        if (keccak256(a) != keccak256(b)) revert AssertionFailedBytes32(what, keccak256(a), keccak256(b));
    }

    function assertTrue(bool c, string memory what) internal pure {
        if (!c) revert AssertionFailed(what, 0, 1);
    }

    error InvalidBound(uint256 lo, uint256 hi);

    /// @dev `x` itself when it lies in [lo, hi], so fuzzed edge values reach the test unchanged;
    /// otherwise `x` wrapped into the range. An empty range is a bug in the test, not an input.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        if (hi < lo) revert InvalidBound(lo, hi);
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo + 1; // not zero: the full uint256 range returned above
        return lo + (x % size);
    }
}
